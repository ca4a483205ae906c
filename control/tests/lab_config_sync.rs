//! Config sync in the lab (the seed's "High Avail. Sync", XML-RPC's role): the primary's
//! changes reach the secondary and are enforced there after a failover; `no_sync` items stay
//! home; the secondary keeps the pushed config across a restart while the primary is dead; a
//! push the secondary cannot validate is refused whole and shown on the primary; a secondary
//! that was down converges on its own; wrong credentials, a stranger and a replayed session
//! change nothing; no secret crosses the sync link in clear.
//!
//! Needs root. Lab tests take the machine-wide lab lock: one at a time.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{config, Fw, LONG, POLL};
use serde_json::Value;
const SERVER_IP: &str = "172.25.46.1";
use tandem_testlab::{require_root, wait_until, Lab, Node};

/// A rule that blocks the client's pings to the server, inserted on LAN before the default
/// allow rule (first match wins).
const BLOCK_PING: &str = r#"
[[filter.rules]]
interface = "lan"
action = "block"
protocol = "icmp"
source = { address = "lan net" }
destination = { address = "172.25.46.1" }
description = "no ping to the server (pushed)"

[[filter.rules]]
interface = "lan"
action = "block"
protocol = "udp"
destination = { address = "any", port = 9 }
description = "discard, on A only"
no_sync = true
"#;

/// The seed's LAN allow rule, before which [`BLOCK_PING`] goes.
const LAN_ALLOW: &str = "[[filter.rules]]\ninterface = \"lan\"\naction = \"pass\"\nsource = { address = \"lan net\" }\ndestination = { address = \"any\" }";

/// A copy of a seed config in the lab's log dir, which the test may edit.
fn copy_config(lab: &Lab, name: &str) -> PathBuf {
    let to = lab.log_dir().join(name);
    std::fs::copy(config(name), &to).unwrap();
    to
}

/// `text` with `rules` inserted before the LAN allow rule.
fn with_rules(text: &str, rules: &str) -> String {
    assert!(text.contains(LAN_ALLOW), "the seed's LAN rule moved");
    text.replacen(LAN_ALLOW, &format!("{rules}\n{LAN_ALLOW}"), 1)
}

fn edit(path: &Path, f: impl FnOnce(&str) -> String) {
    let text = std::fs::read_to_string(path).unwrap();
    std::fs::write(path, f(&text)).unwrap();
}

fn sync_state(fw: &Fw) -> Value {
    fw.json(&["config", "sync"])
}

fn in_sync(fw: &Fw) -> bool {
    sync_state(fw)["in_sync"] == Value::Bool(true)
}

fn rule_descriptions(fw: &Fw) -> Vec<String> {
    fw.json(&["rules"])["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["description"].as_str().map(str::to_string))
        .collect()
}

fn has_rule(fw: &Fw, description: &str) -> bool {
    rule_descriptions(fw).iter().any(|d| d == description)
}

fn rule_hits(fw: &Fw, description: &str) -> u64 {
    fw.json(&["rules"])["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["description"] == description)
        .and_then(|r| r["hits"].as_u64())
        .unwrap_or(0)
}

fn generation(fw: &Fw) -> u64 {
    fw.json(&["status"])["generation"].as_u64().unwrap()
}

fn carp_all(fw: &Fw, status: &str) -> bool {
    let carp = fw.json(&["carp"]);
    let vips = carp["vips"].as_array().cloned().unwrap_or_default();
    !vips.is_empty() && vips.iter().all(|v| v["status"] == status)
}

/// Both boxes up with (copies of) the seed's configs, the first push done: A master, B backup,
/// in sync.
fn cluster<'a>(lab: &'a Lab, a_file: &Path, b_file: &Path) -> (Fw<'a>, Fw<'a>) {
    let b = Fw::start(lab, Node::Fwb, &b_file.display().to_string());
    let a = Fw::start(lab, Node::Fwa, &a_file.display().to_string());
    assert!(
        wait_until(LONG, POLL, || in_sync(&a) && in_sync(&b)),
        "the boxes did not get in sync: A {} B {}",
        sync_state(&a),
        sync_state(&b)
    );
    assert!(
        wait_until(LONG, POLL, || carp_all(&a, "MASTER")
            && carp_all(&b, "BACKUP")),
        "no election"
    );
    (a, b)
}

#[test]
fn a_rule_applied_on_a_reaches_b_b_enforces_it_after_a_dies_and_keeps_it_across_a_restart() {
    require_root();
    let lab = Lab::up("cs").unwrap();
    let (a_file, b_file) = (
        copy_config(&lab, "fw-a.toml"),
        copy_config(&lab, "fw-b.toml"),
    );
    let (mut a, mut b) = cluster(&lab, &a_file, &b_file);
    assert!(
        lab.ping(Node::Client, SERVER_IP, 1),
        "no ping before the change"
    );
    let gen_b = generation(&b);

    // The change on A.
    edit(&a_file, |t| with_rules(t, BLOCK_PING));
    let applied = Instant::now();
    let (ok, out) = a.ctl(&["config", "apply"]);
    assert!(ok, "{out}");
    assert!(
        wait_until(LONG, Duration::from_millis(5), || has_rule(
            &b,
            "no ping to the server (pushed)"
        )),
        "the rule never reached B: {}",
        sync_state(&a)
    );
    let took = applied.elapsed();
    eprintln!("config apply on A -> rule in force on B: {took:?}");
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert_eq!(generation(&b), gen_b + 1, "one new generation on B");
    assert!(wait_until(LONG, POLL, || in_sync(&a) && in_sync(&b)));
    // The no_sync rule stays on A.
    assert!(has_rule(&a, "discard, on A only"));
    assert!(!has_rule(&b, "discard, on A only"));
    // B says where its rules came from; secrets are masked.
    let show = b.json(&["config", "show"]);
    let sections: Vec<&str> = show["from_peer"]["sections"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(sections.contains(&"rules") && sections.contains(&"virtual_ips"));
    assert!(show["from_peer"]["from"]
        .as_str()
        .unwrap()
        .contains("10.255.0.1"));
    let text = show["text"].as_str().unwrap();
    assert!(!text.contains("tandem-lab-vhid1") && !text.contains("tandem-lab-config-sync"));
    assert!(text.contains("no ping to the server (pushed)"));
    // The status line.
    let (_, status) = b.ctl(&["status"]);
    assert!(status.contains("Config sync secondary"), "{status}");

    // A dies: B takes over and enforces A's rule.
    a.kill9();
    assert!(
        wait_until(LONG, POLL, || carp_all(&b, "MASTER")),
        "B did not take over"
    );
    let before = rule_hits(&b, "no ping to the server (pushed)");
    assert!(
        !lab.ping(Node::Client, SERVER_IP, 2),
        "the pushed block rule is not enforced on B"
    );
    assert!(rule_hits(&b, "no ping to the server (pushed)") > before);

    // B restarted while A is dead: it still runs the pushed config.
    b.kill9();
    b.spawn(&b_file.display().to_string());
    assert!(has_rule(&b, "no ping to the server (pushed)"));
    assert!(!b.json(&["config", "show"])["from_peer"].is_null());
    assert!(wait_until(LONG, POLL, || carp_all(&b, "MASTER")));
    assert!(
        !lab.ping(Node::Client, SERVER_IP, 2),
        "not enforced after B's restart"
    );
    drop((a, b));
}

#[test]
fn a_push_b_cannot_validate_is_refused_whole_and_a_shows_why() {
    require_root();
    let lab = Lab::up("csbad").unwrap();
    let (a_file, b_file) = (
        copy_config(&lab, "fw-a.toml"),
        copy_config(&lab, "fw-b.toml"),
    );
    // B has an alias of its own that no push removes.
    let own_alias = "\n[[aliases]]\nname = \"mgmt\"\ntype = \"host\"\nentries = [\"192.168.0.250\"]\nno_sync = true\n";
    edit(&b_file, |t| format!("{t}{own_alias}"));
    let (a, b) = cluster(&lab, &a_file, &b_file);
    let (gen_b, rules_b) = (generation(&b), rule_descriptions(&b));
    // A defines the same alias name, valid on A, a duplicate on B.
    edit(&a_file, |t| {
        format!(
            "{}\n[[aliases]]\nname = \"mgmt\"\ntype = \"host\"\nentries = [\"192.168.0.251\"]\n",
            with_rules(t, BLOCK_PING)
        )
    });
    // A applies it, and its apply says the push failed (exit 1): the pair now runs two
    // configs, which the apply used to leave to `config sync` to tell.
    let (ok, out) = a.ctl(&["config", "apply"]);
    assert!(
        out.contains("applied: generation"),
        "A refused its own valid file: {out}"
    );
    assert!(
        !ok && out.contains("the secondary refused the push") && out.contains("mgmt"),
        "{out}"
    );
    let refused = || sync_state(&a)["last_push"]["result"] == "refused";
    assert!(wait_until(LONG, POLL, refused), "{}", sync_state(&a));
    let err = sync_state(&a)["last_push"]["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(err.contains("aliases[") && err.contains("mgmt"), "{err}");
    let (_, human) = a.ctl(&["config", "sync"]);
    assert!(
        human.contains("refused") && human.contains("mgmt"),
        "{human}"
    );
    assert!(!in_sync(&a));
    // B is unchanged: same generation, same rules.
    assert_eq!(generation(&b), gen_b);
    assert_eq!(rule_descriptions(&b), rules_b);
    assert!(b.counter("config_sync_apply_refused") >= 1);
    assert!(a.counter("config_sync_pushes_refused") >= 1);
    // `config sync now` says so too, with exit status 1.
    let (ok, out) = a.ctl(&["config", "sync", "now"]);
    assert!(!ok && out.contains("refused"), "{out}");
    // Fixed on A: B takes it.
    edit(&a_file, |t| {
        t.replace("name = \"mgmt\"", "name = \"mgmt_a\"")
    });
    let (ok, out) = a.ctl(&["config", "apply"]);
    assert!(ok, "{out}");
    assert!(wait_until(LONG, POLL, || in_sync(&a) && in_sync(&b)));
    assert!(has_rule(&b, "no ping to the server (pushed)"));
    // A change of the sync rule that would shut config sync out on B (valid on A, which only
    // pushes) is refused by B: no later push could undo it.
    let gen_b = generation(&b);
    edit(&a_file, |t| {
        t.replace(
            "destination = { address = \"self\", port = 8443 }",
            "destination = { address = \"self\", port = 9443 }",
        )
    });
    // (Asked for JSON: one document, the apply's reply with the refusal as its error.)
    let (ok, out) = a.ctl(&["config", "apply", "--json"]);
    assert!(!ok, "{out}");
    let v: Value = serde_json::from_str(out.lines().next().unwrap_or("")).unwrap();
    assert!(v["generation"].is_u64(), "{v}");
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("no longer pass config sync")),
        "{v}"
    );
    let locked_out = || {
        sync_state(&a)["last_push"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("no longer pass config sync"))
    };
    assert!(wait_until(LONG, POLL, locked_out), "{}", sync_state(&a));
    assert_eq!(generation(&b), gen_b);
    // ... and B still takes the next, good push.
    edit(&a_file, |t| t.replace("port = 9443 }", "port = 8443 }"));
    let (ok, out) = a.ctl(&["config", "apply"]);
    assert!(ok && !out.contains("warning"), "{out}");
    assert!(wait_until(LONG, POLL, || in_sync(&a) && in_sync(&b)));
    // An apply on B, which runs A's push, says where its pushed sections come from.
    edit(&b_file, |t| t.replace("192.168.0.250", "192.168.0.249"));
    let (ok, out) = b.ctl(&["config", "apply"]);
    assert!(
        ok && out.contains("come from the primary's last push"),
        "{out}"
    );
    drop((a, b));
}

#[test]
fn b_down_during_a_change_converges_when_it_returns_and_strangers_are_refused() {
    require_root();
    let lab = Lab::up("csdown").unwrap();
    let (a_file, b_file) = (
        copy_config(&lab, "fw-a.toml"),
        copy_config(&lab, "fw-b.toml"),
    );
    let (a, mut b) = cluster(&lab, &a_file, &b_file);
    b.kill9();
    edit(&a_file, |t| with_rules(t, BLOCK_PING));
    let (ok, out) = a.ctl(&["config", "apply"]);
    assert!(ok && out.contains("the secondary was not reached"), "{out}");
    assert!(
        wait_until(LONG, POLL, || sync_state(&a)["last_error"].is_string()),
        "A does not say B is unreachable: {}",
        sync_state(&a)
    );
    assert!(!in_sync(&a));
    let (_, status) = a.ctl(&["status"]);
    assert!(status.contains("NOT in sync"), "{status}");
    // B comes back with its old file: A's retries bring it up to date, no operator needed.
    b.spawn(&b_file.display().to_string());
    assert!(
        wait_until(LONG, POLL, || has_rule(
            &b,
            "no ping to the server (pushed)"
        )),
        "B did not converge: A {}",
        sync_state(&a)
    );
    assert!(wait_until(LONG, POLL, || in_sync(&a) && in_sync(&b)));

    // A stranger on the sync link (an address of the switch's, not the peer's) is refused
    // before any handshake.
    let sw = lab.ns(Node::Switch);
    let run = |args: &[&str]| {
        Command::new("ip")
            .args(["netns", "exec", &sw])
            .args(args)
            .status()
            .unwrap()
    };
    assert!(run(&["ip", "addr", "add", "10.255.0.99/24", "dev", "sync"]).success());
    let refused = b.counter("config_sync_refused_source");
    let _ = run(&[
        "bash",
        "-c",
        "exec 3<>/dev/tcp/10.255.0.2/8443 && printf 'hello' >&3",
    ]);
    assert!(wait_until(LONG, POLL, || b
        .counter("config_sync_refused_source")
        > refused));
    drop((a, b));
}

#[test]
fn a_wrong_password_is_refused_and_changes_nothing() {
    require_root();
    let lab = Lab::up("cspw").unwrap();
    let (a_file, b_file) = (
        copy_config(&lab, "fw-a.toml"),
        copy_config(&lab, "fw-b.toml"),
    );
    edit(&a_file, |t| {
        with_rules(t, BLOCK_PING).replace("tandem-lab-config-sync", "not the password")
    });
    let b = Fw::start(&lab, Node::Fwb, &b_file.display().to_string());
    let gen_b = generation(&b);
    let a = Fw::start(&lab, Node::Fwa, &a_file.display().to_string());
    assert!(
        wait_until(LONG, POLL, || b.counter("config_sync_auth_failures") >= 1),
        "B counted no authentication failure"
    );
    let e = sync_state(&a)["last_error"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(e.contains("authentication failed"), "{e}");
    assert!(!in_sync(&a));
    assert_eq!(generation(&b), gen_b);
    assert!(!has_rule(&b, "no ping to the server (pushed)"));
    drop((a, b));
}

fn tshark_errors(pcap: &Path) -> String {
    let out = Command::new("tshark")
        .args(["-r", &pcap.display().to_string()])
        .output()
        .expect("tshark runs");
    String::from_utf8_lossy(&out.stderr).into_owned()
        + &String::from_utf8_lossy(&out.stdout)
            .lines()
            .take(5)
            .collect::<Vec<_>>()
            .join("\n")
}

/// What A sent to B's config sync port in its TCP sessions, in a capture: one hex string of
/// payload bytes per session, in order.
fn sessions_sent(pcap: &Path) -> Vec<Vec<u8>> {
    let out = Command::new("tshark")
        .args(["-r", &pcap.display().to_string(), "-Y"])
        .arg("ip.src==10.255.0.1 && tcp.dstport==8443 && tcp.len>0")
        .args(["-T", "fields", "-e", "tcp.stream", "-e", "tcp.payload"])
        .output()
        .expect("tshark runs");
    let mut sessions: Vec<(String, Vec<u8>)> = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let mut f = line.split('\t');
        let (Some(stream), Some(hex)) = (f.next(), f.next()) else {
            continue;
        };
        let bytes: Vec<u8> = (0..hex.len() / 2)
            .filter_map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok())
            .collect();
        match sessions.iter_mut().find(|(s, _)| s == stream) {
            Some((_, b)) => b.extend(bytes),
            None => sessions.push((stream.to_string(), bytes)),
        }
    }
    sessions.into_iter().map(|(_, b)| b).collect()
}

#[test]
fn a_captured_session_replayed_later_changes_nothing_and_no_secret_crosses_in_clear() {
    require_root();
    let lab = Lab::up("csrply").unwrap();
    let (a_file, b_file) = (
        copy_config(&lab, "fw-a.toml"),
        copy_config(&lab, "fw-b.toml"),
    );
    let (a, b) = cluster(&lab, &a_file, &b_file);
    // Capture the sync link on the switch port facing B while A pushes a change.
    let pcap = lab.log_dir().join("sync.pcap");
    let mut tcpdump = lab
        .spawn(
            Node::Switch,
            &[
                "tcpdump",
                "-i",
                "fwb-sync",
                "--immediate-mode",
                "-U",
                "-w",
                &pcap.display().to_string(),
                "tcp port 8443",
            ],
        )
        .unwrap();
    assert!(wait_until(LONG, POLL, || tcpdump
        .log()
        .contains("listening")));
    edit(&a_file, |t| with_rules(t, BLOCK_PING));
    let (ok, out) = a.ctl(&["config", "apply"]);
    assert!(ok, "{out}");
    assert!(wait_until(LONG, POLL, || has_rule(
        &b,
        "no ping to the server (pushed)"
    )));
    // Then the rule goes away again on A, and B follows.
    edit(&a_file, |t| t.replace(BLOCK_PING, ""));
    let (ok, out) = a.ctl(&["config", "apply"]);
    assert!(ok, "{out}");
    assert!(wait_until(LONG, POLL, || !has_rule(
        &b,
        "no ping to the server (pushed)"
    )));
    assert!(wait_until(LONG, POLL, || in_sync(&a) && in_sync(&b)));
    let _ = Command::new("kill")
        .args(["-INT", &tcpdump.id().to_string()])
        .status();
    let _ = tcpdump.wait_timeout(Duration::from_secs(5));
    let captured = std::fs::read(&pcap).unwrap();
    // Secrets and content are sealed: no password, no rule text in clear.
    for clear in [
        "tandem-lab-vhid1",
        "tandem-lab-vhid2",
        "tandem-lab-config-sync",
        "no ping to the server",
        "filter",
    ] {
        assert!(
            !captured.windows(clear.len()).any(|w| w == clear.as_bytes()),
            "{clear:?} crosses the sync link in clear"
        );
    }
    // Replay the session that pushed the block rule, from A's own address (past the source
    // check): B reads nothing of it.
    let sessions = sessions_sent(&pcap);
    assert!(
        sessions.len() >= 2,
        "{} sessions captured in {} bytes; tshark: {}; tcpdump: {}",
        sessions.len(),
        captured.len(),
        tshark_errors(&pcap),
        tcpdump.log()
    );
    let (gen_b, malformed) = (generation(&b), b.counter("config_sync_malformed"));
    for s in &sessions {
        let hex: String = s.iter().map(|b| format!("{b:02x}")).collect();
        let script = format!(
            "import socket,time; s=socket.create_connection(('10.255.0.2',8443)); s.sendall(bytes.fromhex('{hex}')); time.sleep(0.5)"
        );
        let out = lab.exec(Node::Fwa, &["python3", "-c", &script]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(
        wait_until(LONG, POLL, || b.counter("config_sync_malformed")
            >= malformed + sessions.len() as u64),
        "B did not refuse every replayed session"
    );
    assert_eq!(generation(&b), gen_b, "a replay changed B");
    assert!(!has_rule(&b, "no ping to the server (pushed)"));
    drop((a, b));
}

#[test]
fn the_doctor_finds_the_healthy_pair_clean_online_and_a_stopped_peer_unreachable() {
    require_root();
    let lab = Lab::up("csdoc").unwrap();
    let (a_file, b_file) = (
        copy_config(&lab, "fw-a.toml"),
        copy_config(&lab, "fw-b.toml"),
    );
    let (a, mut b) = cluster(&lab, &a_file, &b_file);
    // Healthy: no finding on either box (once B's bulk update is in).
    for fw in [&a, &b] {
        let clean = wait_until(LONG, POLL, || {
            let (ok, out) = fw.ctl(&["doctor", "--json"]);
            ok && serde_json::from_str::<Value>(&out)
                .is_ok_and(|v| v["findings"].as_array().is_some_and(Vec::is_empty))
        });
        assert!(clean, "{}", fw.ctl(&["doctor"]).1);
    }
    // The doctors read each other over the config sync channel.
    assert!(b.counter("config_sync_inspections") >= 1);
    // The idle sync link carries keepalives: A heard B within the last few seconds.
    let heard = a.json_any(&["sync"])["peer_heard_ms"].as_u64();
    assert!(heard.is_some_and(|ms| ms < 3000), "{heard:?}");
    // B stopped: A's doctor says the peer is unreachable, with exit status 1.
    b.kill9();
    let (ok, out) = a.ctl(&["doctor"]);
    assert!(!ok, "{out}");
    assert!(out.contains("[peer-unreachable]"), "{out}");
    let v = a.json_any(&["doctor"]);
    let f = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == "peer-unreachable")
        .cloned()
        .unwrap();
    assert_eq!(f["severity"], "error");
    // Three keepalives missed, A's state sync calls its peer silent as well.
    let silent = wait_until(LONG, POLL, || {
        a.ctl(&["doctor"]).1.contains("[state-sync-peer-silent]")
    });
    assert!(silent, "{}", a.ctl(&["doctor"]).1);
    // And A's log says so, once, without anyone asking.
    let log = a.daemon.as_ref().unwrap().log();
    // (tandemd made its state dir, private, and kept its boot ids there.)
    assert!(!log.contains("not persisted"), "{log}");
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(a.state_dir()).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o700);
    }
    assert_eq!(
        log.matches("sync: nothing heard from the peer").count(),
        1,
        "{log}"
    );
    drop((a, b));
}

/// A pfsync pass rule fixed by a reload reaches state sync at once: the sync thread's rule
/// filter used to keep the rules of its start until tandemd restarted, so the doctor's
/// "check the pfsync pass rules" advice did nothing until then.
#[test]
fn a_pfsync_rule_fixed_by_a_reload_lets_state_sync_through() {
    require_root();
    let lab = Lab::up("cspfs").unwrap();
    let (a_file, b_file) = (
        copy_config(&lab, "fw-a.toml"),
        copy_config(&lab, "fw-b.toml"),
    );
    const PASS: &str = "action = \"pass\"\nprotocol = \"pfsync\"";
    const BLOCK: &str = "action = \"block\"\nprotocol = \"pfsync\"";
    edit(&a_file, |t| {
        assert!(t.contains(PASS), "the seed's pfsync rule moved");
        t.replacen(PASS, BLOCK, 1)
    });
    // Not `cluster`: B refuses A's push of the blocking rule, so the two never get in sync.
    let b = Fw::start(&lab, Node::Fwb, &b_file.display().to_string());
    let a = Fw::start(&lab, Node::Fwa, &a_file.display().to_string());
    // A's rules drop B's sync datagrams (its keepalives, at least): A never hears B.
    assert!(wait_until(LONG, POLL, || a.counter("sync_blocked_by_rule") >= 3));
    assert_eq!(a.json_any(&["sync"])["peer_heard_ms"], Value::Null);
    edit(&a_file, |t| t.replacen(BLOCK, PASS, 1));
    let (ok, out) = a.ctl(&["config", "apply"]);
    assert!(ok, "config apply: {out}");
    // Without a restart, A hears B within a few keepalives.
    assert!(
        wait_until(LONG, POLL, || a.json_any(&["sync"])["peer_heard_ms"]
            .as_u64()
            .is_some_and(|ms| ms < 1500)),
        "{}",
        a.ctl(&["sync"]).1
    );
    // The sync link's address is what the sync threads were built with: a reload changing it
    // is refused (it used to be taken, and the rules then judged datagrams to the new address
    // against the old one, blocking them all).
    edit(&a_file, |t| {
        t.replacen(
            "address = \"10.255.0.1/24\"",
            "address = \"10.255.0.5/24\"",
            1,
        )
    });
    let (ok, out) = a.ctl(&["config", "apply"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("the sync interface's device or address changed; restart tandemd"),
        "{out}"
    );
    drop((a, b));
}
