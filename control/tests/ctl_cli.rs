//! The real `tandemctl` binary against a fake daemon: a `ControlServer` in a test thread whose
//! handler answers canned replies built from `api` types. This tests the CLI (arguments sent,
//! tables, `--json` shapes, exit codes, capture files), not the daemon.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command as Proc, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{json, Value};
use tandem_control::api::{
    self, CaptureDir, CaptureFrame, CapturePollReply, CaptureStopReply, CarpReply, CarpStatus,
    CarpVip, Command, ConfigCheckArgs, ConfigCheckReply, Endpoints, InterfaceInfo, RuleInfo,
    RulesReply, StateInfo, StatesKillArgs, StatesKillReply, StatesReply, StatsReply, StatusReply,
    SyncReply,
};
use tandem_control::socket::{ControlServer, Handler, Request};

/// Canned answers; remembers every request.
#[derive(Default)]
struct Fake {
    seen: Arc<Mutex<Vec<Request>>>,
    polls: usize,
    /// Refuse `capture.start` as a busy daemon would.
    capture_busy: bool,
    /// Refuse `sync`.
    refuse_sync: bool,
    /// A capture that never ends by itself.
    endless: bool,
}

fn carp_reply() -> CarpReply {
    CarpReply {
        vips: vec![
            CarpVip {
                interface: "wan".into(),
                vhid: 1,
                vip: Ipv4Addr::new(172, 25, 46, 100),
                status: CarpStatus::Master,
                advbase: 1,
                advskew: 0,
                demotion: 0,
                last_transition_reason: "master down".into(),
                previous_status: Some(CarpStatus::Backup),
                since_s: None,
            },
            CarpVip {
                interface: "lan".into(),
                vhid: 2,
                vip: Ipv4Addr::new(192, 168, 0, 10),
                status: CarpStatus::Backup,
                advbase: 1,
                advskew: 100,
                demotion: 0,
                last_transition_reason: String::new(),
                previous_status: None,
                since_s: None,
            },
        ],
        enabled: true,
        maintenance: false,
        demotion: 0,
    }
}

fn state(stack: (&str, &str), wire: (&str, &str)) -> StateInfo {
    let stack = Endpoints {
        src: stack.0.parse().unwrap(),
        dst: stack.1.parse().unwrap(),
    };
    let wire = Endpoints {
        src: wire.0.parse().unwrap(),
        dst: wire.1.parse().unwrap(),
    };
    StateInfo {
        id: StateInfo::format_id(1, 0x1f4),
        proto: "tcp".into(),
        stack,
        wire,
        nat: stack != wire,
        src_state: "ESTABLISHED".into(),
        dst_state: "ESTABLISHED".into(),
        age_s: 12,
        expires_in_s: 86388,
        packets: [10, 8],
        bytes: [1200, 64000],
        rule: Some(3),
    }
}

/// A UDP frame from the LAN client to the server (checksums are not what this test is about).
fn frame(sport: u16) -> Vec<u8> {
    let mut f = vec![0u8; 14 + 20 + 8];
    f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 0xb]);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 0xa]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&28u16.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&[192, 168, 0, 100]);
    ip[16..20].copy_from_slice(&[172, 25, 46, 1]);
    let udp = &mut f[34..];
    udp[0..2].copy_from_slice(&sport.to_be_bytes());
    udp[2..4].copy_from_slice(&5001u16.to_be_bytes());
    udp[4..6].copy_from_slice(&8u16.to_be_bytes());
    f
}

impl Handler for Fake {
    type Error = Box<dyn std::error::Error>;
    fn handle(&mut self, req: &Request) -> Result<Value, Self::Error> {
        self.seen.lock().unwrap().push(req.clone());
        match Command::of(req)? {
            Command::Status => api::to_data(&StatusReply {
                hostname: "fw-a".into(),
                host_id: 1,
                version: "0.1.0".into(),
                uptime_s: 3723,
                generation: 2,
                config_file: "/etc/tandem/fw-a.toml".into(),
                workers: 2,
                ring_size: 4096,
                interfaces: vec![InterfaceInfo {
                    name: "lan".into(),
                    device: "lan".into(),
                    link: "down".into(),
                    mac: "02:00:00:00:00:0a".into(),
                    address: "192.168.0.11/24".into(),
                    rx_packets: 5,
                    rx_bytes: 500,
                    tx_packets: 4,
                    tx_bytes: 400,
                    xdp: "native".into(),
                    socket: "copy".into(),
                    queues: 2,
                }],
                states: 1,
                config_sync: Some(
                    "primary (pushes to 10.255.0.2:8443): in sync (version 9, 0123456789ab)".into(),
                ),
            }),
            Command::Carp | Command::CarpEnable | Command::MaintenanceOff => {
                api::to_data(&carp_reply())
            }
            Command::MaintenanceOn => Err("maintenance mode needs a peer: none answers".into()),
            Command::States => api::to_data(&StatesReply {
                count: 2,
                states: vec![
                    state(
                        ("192.168.0.100:40000", "172.25.46.1:80"),
                        ("172.25.46.100:51234", "172.25.46.1:80"),
                    ),
                    state(
                        ("192.168.0.100:40002", "192.168.0.11:22"),
                        ("192.168.0.100:40002", "192.168.0.11:22"),
                    ),
                ],
            }),
            Command::Rules => api::to_data(&RulesReply {
                rules: vec![RuleInfo {
                    number: 1,
                    interface: "lan".into(),
                    action: "pass".into(),
                    proto: "any".into(),
                    source: "lan net".into(),
                    destination: "any".into(),
                    port: "*".into(),
                    description: "Default allow LAN to any rule".into(),
                    hits: 17,
                    bytes: 20480,
                }],
            }),
            Command::Sync if self.refuse_sync => {
                Err("state sync is not configured ([ha.state_sync] is absent)".into())
            }
            Command::Stats => api::to_data(&StatsReply::from_pairs([
                ("rx_frames", 42),
                ("tx_frames", 40),
                ("drop_bad_checksum", 0),
                ("drop_no_route", 2),
            ])),
            Command::Sync => api::to_data(&SyncReply::not_running()),
            Command::DhcpLeases => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs();
                let lease = |ip: &str, expires: u64, state: &str| api::DhcpLeaseInfo {
                    mac: "02:00:00:00:de:01".into(),
                    ip: ip.into(),
                    hostname: "laptop".into(),
                    expires,
                    state: state.into(),
                };
                api::to_data(&api::DhcpLeasesReply {
                    leases: vec![
                        // Two hours and a little slack (the CLI reads the clock a moment later).
                        lease("192.168.0.150", now + 7230, "bound"),
                        lease("192.168.0.151", now - 600, "expired"),
                    ],
                })
            }
            Command::ConfigCheck => {
                let a: ConfigCheckArgs = api::parse_args(req)?;
                api::to_data(&ConfigCheckReply {
                    path: a.path,
                    valid: false,
                    errors: vec!["fw.toml: system.hostname: must not be empty".into()],
                })
            }
            Command::CaptureStart if self.capture_busy => {
                Err("another capture is running (started by another tandemctl?)".into())
            }
            Command::CaptureStart => {
                self.polls = 0;
                Ok(Value::Null)
            }
            Command::CapturePoll => {
                self.polls += 1;
                // One frame per poll, the first poll empty: tandemctl must keep polling.
                let frames = match self.polls {
                    2 | 3 => vec![CaptureFrame {
                        if_index: 0,
                        dir: CaptureDir::Rx,
                        ts_ns: 1_700_000_000_000_000_000 + self.polls as u64,
                        orig_len: 42,
                        hex: api::hex_encode(&frame(40000 + self.polls as u16)),
                    }],
                    _ => vec![],
                };
                api::to_data(&CapturePollReply {
                    done: self.polls >= 3 && !self.endless,
                    captured: self.polls.saturating_sub(1).min(2) as u64,
                    dropped: 1,
                    frames,
                })
            }
            Command::CaptureStop => api::to_data(&CaptureStopReply {
                captured: 2,
                dropped: 1,
            }),
            Command::StatesKill => {
                let a: StatesKillArgs = api::parse_args(req)?;
                let killed = if a.all { 7 } else { 3 };
                let note = (a.rule == Some(77)).then(|| "no rule 77 in the rules in force".into());
                api::to_data(&StatesKillReply { killed, note })
            }
            other => Err(format!("{other} is not faked").into()),
        }
    }
}

/// The fake daemon in a thread; stops when dropped.
struct Daemon {
    path: PathBuf,
    seen: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Daemon {
    fn start(name: &str, mut fake: Fake) -> Daemon {
        let path = temp(&format!("{name}.sock"));
        let mut server = ControlServer::bind(&path).unwrap();
        let seen = fake.seen.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                server
                    .poll_once(Duration::from_millis(10), &mut fake)
                    .unwrap();
            }
        });
        Daemon {
            path,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    fn ctl(&self, args: &[&str]) -> Output {
        tandemctl(&self.path, args)
    }

    fn requests(&self) -> Vec<Request> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("tandem-ctl-{}-{name}", std::process::id()))
}

fn tandemctl(socket: &Path, args: &[&str]) -> Output {
    Proc::new(env!("CARGO_BIN_EXE_tandemctl"))
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}, stderr: {}",
        o.status.code(),
        stderr(o)
    );
    stdout(o)
}

#[test]
fn carp_json_is_the_contract_shape() {
    let d = Daemon::start("carp-json", Fake::default());
    let out = ok(&d.ctl(&["carp", "--json"]));
    assert!(
        out.starts_with(
            r#"{"vips":[{"interface":"wan","vhid":1,"vip":"172.25.46.100","status":"MASTER","#
        ),
        "{out}"
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["vips"][0]["status"], "MASTER");
    assert_eq!(v["vips"][0]["vhid"], 1);
    assert_eq!(v["vips"][1]["status"], "BACKUP");
    assert_eq!(v["vips"][1]["advskew"], 100);
    assert_eq!(v["maintenance"], false);
    // --json is global: it may come first too.
    let first = ok(&d.ctl(&["--json", "carp"]));
    assert_eq!(first, out);
    assert_eq!(d.requests()[0].cmd, "carp");
}

#[test]
fn carp_table_reads_like_pfsenses_status_page() {
    let d = Daemon::start("carp-table", Fake::default());
    let out = ok(&d.ctl(&["carp"]));
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with(
            "Interface@VHID  Virtual IP     Status  Advbase  Skew  Demotion  Last transition"
        ),
        "{out}"
    );
    assert_eq!(
        lines[1],
        "WAN@1           172.25.46.100  MASTER  1        0     0         BACKUP -> MASTER (master down)"
    );
    assert_eq!(
        lines[2],
        "LAN@2           192.168.0.10   BACKUP  1        100   0         -"
    );
    assert!(
        out.contains("CARP enabled, maintenance mode off, demotion 0"),
        "{out}"
    );
}

#[test]
fn carp_switches_send_their_commands_and_show_the_table_after() {
    let d = Daemon::start("carp-switch", Fake::default());
    let out = ok(&d.ctl(&["carp", "enable"]));
    assert!(out.contains("WAN@1"), "{out}");
    ok(&d.ctl(&["maintenance", "off"]));
    let cmds: Vec<String> = d.requests().into_iter().map(|r| r.cmd).collect();
    assert_eq!(cmds, ["carp.enable", "maintenance.off"]);
}

#[test]
fn a_refusal_prints_the_daemons_message_and_exits_1() {
    let d = Daemon::start("refused", Fake::default());
    let o = d.ctl(&["maintenance", "on"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        "tandemctl: maintenance mode needs a peer: none answers\n"
    );
    assert_eq!(stdout(&o), "");
    drop(d);
    let fake = Fake {
        refuse_sync: true,
        ..Fake::default()
    };
    let d = Daemon::start("refused-json", fake);
    let o = d.ctl(&["sync", "--json"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        "tandemctl: state sync is not configured ([ha.state_sync] is absent)\n"
    );
}

#[test]
fn rules_show_their_hit_counters() {
    let d = Daemon::start("rules", Fake::default());
    let out = ok(&d.ctl(&["rules"]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "#  Interface  Action  Proto  Source   Destination  Port  Hits  Bytes  Description",
            "1  LAN        pass    any    lan net  any          *     17    20480  Default allow LAN to any rule",
        ]
    );
    let v: Value = serde_json::from_str(&ok(&d.ctl(&["rules", "--json"]))).unwrap();
    assert_eq!(v["rules"][0]["hits"], 17);
}

#[test]
fn no_daemon_exits_1_saying_where_it_looked() {
    let path = temp("nobody.sock");
    let o = tandemctl(&path, &["status"]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.starts_with(&format!(
            "tandemctl: cannot reach tandemd at {}",
            path.display()
        )),
        "{e}"
    );
}

#[test]
fn usage_errors_exit_2() {
    let path = temp("usage.sock");
    for args in [
        &["carp", "toggle"][..],
        &["states", "--port", "70000"],
        &["capture", "--count", "0", "--write", "x.pcap"],
        &["maintenance"],
    ] {
        let o = tandemctl(&path, args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
    }
}

#[test]
fn states_json_has_count_and_states_and_filters_travel_as_args() {
    let d = Daemon::start("states-json", Fake::default());
    let out = ok(&d.ctl(&["states", "--json", "--port", "80", "--proto", "tcp"]));
    assert!(out.starts_with(r#"{"count":2,"states":["#), "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["count"], 2);
    assert_eq!(v["states"][0]["nat"], true);
    assert_eq!(v["states"][0]["wire"]["src"], "172.25.46.100:51234");
    assert_eq!(v["states"][0]["id"], "00000001:00000000000001f4");
    let req = &d.requests()[0];
    assert_eq!(req.cmd, "states");
    assert_eq!(req.args, json!({"port": 80, "proto": "tcp"}));
}

#[test]
fn states_lines_show_the_nat_mapping() {
    let d = Daemon::start("states", Fake::default());
    let out = ok(&d.ctl(&["states"]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "tcp 192.168.0.100:40000 -> 172.25.46.1:80 (nat 172.25.46.100:51234) ESTABLISHED:ESTABLISHED 12s",
            "tcp 192.168.0.100:40002 -> 192.168.0.11:22 ESTABLISHED:ESTABLISHED 12s",
            "2 states",
        ]
    );
}

#[test]
fn stats_keep_the_daemons_order_and_hide_zeros_unless_asked() {
    let d = Daemon::start("stats", Fake::default());
    let out = ok(&d.ctl(&["stats", "--json"]));
    assert_eq!(
        out.trim_end(),
        r#"{"counters":{"rx_frames":42,"tx_frames":40,"drop_bad_checksum":0,"drop_no_route":2}}"#
    );
    let out = ok(&d.ctl(&["stats"]));
    assert_eq!(
        out,
        "rx_frames      42\ntx_frames      40\ndrop_no_route  2\n"
    );
    let out = ok(&d.ctl(&["stats", "--all"]));
    assert_eq!(out.lines().nth(2), Some("drop_bad_checksum  0"), "{out}");
}

#[test]
fn status_and_sync_print_their_fields() {
    let d = Daemon::start("status", Fake::default());
    let out = ok(&d.ctl(&["status"]));
    assert!(out.contains("Hostname    fw-a (host id 1)"), "{out}");
    assert!(out.contains("Uptime      1h 02m 03s"), "{out}");
    assert!(
        out.contains("Config sync primary (pushes to 10.255.0.2:8443): in sync"),
        "{out}"
    );
    assert!(
        out.contains("/etc/tandem/fw-a.toml (generation 2)"),
        "{out}"
    );
    assert!(
        out.contains("LAN        lan     down  02:00:00:00:00:0a"),
        "{out}"
    );
    assert!(out.contains("native, copy, 2 queues"), "{out}");
    assert!(
        out.contains("Workers     2 (AF_XDP rings of 4096 entries)"),
        "{out}"
    );
    let v: Value = serde_json::from_str(&ok(&d.ctl(&["status", "--json"]))).unwrap();
    assert_eq!(v["interfaces"][0]["address"], "192.168.0.11/24");
    assert_eq!(v["interfaces"][0]["xdp"], "native");
    let out = ok(&d.ctl(&["sync"]));
    assert!(out.contains("Bulk update       not running"), "{out}");
    assert!(out.contains("Peer heard        never"), "{out}");
}

#[test]
fn dhcp_leases_say_how_long_is_left_and_json_keeps_unix_seconds() {
    let d = Daemon::start("leases", Fake::default());
    let out = ok(&d.ctl(&["dhcp", "leases"]));
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("192.168.0.150   02:00:00:00:de:01 bound     expires in 2h 00m"),
        "{out}"
    );
    assert!(lines[0].ends_with(" laptop"), "{out}");
    assert!(lines[1].contains("expired   expired 10m 0"), "{out}");
    let v: Value = serde_json::from_str(&ok(&d.ctl(&["dhcp", "leases", "--json"]))).unwrap();
    assert!(v["leases"][0]["expires"].as_u64().unwrap() > 1_700_000_000);
}

#[test]
fn config_check_sends_the_files_text_and_its_absolute_path() {
    let d = Daemon::start("check", Fake::default());
    // A relative path, resolved against tandemctl's working directory.
    let dir = std::env::temp_dir().join(format!("tandem-ctl-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("fw.toml"), "[system]\nhostname = \"\"\n").unwrap();
    let o = Proc::new(env!("CARGO_BIN_EXE_tandemctl"))
        .current_dir(&dir)
        .arg("--socket")
        .arg(&d.path)
        .args(["config", "check", "fw.toml"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stderr(&o), "fw.toml: system.hostname: must not be empty\n");
    let req = &d.requests()[0];
    assert_eq!(req.cmd, "config.check");
    let sent = req.args["path"].as_str().unwrap();
    assert_eq!(Path::new(sent), dir.join("fw.toml"));
    // The text travels: tandemd never opens a caller's file (see tandem_control::peer).
    assert_eq!(req.args["text"], "[system]\nhostname = \"\"\n");
    // A file tandemctl cannot read is its own error; nothing is sent.
    let o = d.ctl(&["config", "check", "/nonexistent/fw.toml"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("/nonexistent/fw.toml: No such file"),
        "{}",
        stderr(&o)
    );
    assert_eq!(d.requests().len(), 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn config_check_without_a_daemon_validates_locally_and_says_so() {
    let path = temp("nodaemon.sock");
    let bad = temp("bad.toml");
    std::fs::write(&bad, "this is = not [valid toml\n").unwrap();
    let o = tandemctl(&path, &["config", "check", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.starts_with(&format!(
            "tandemctl: tandemd is not running at {}: checked locally",
            path.display()
        )),
        "{e}"
    );
    assert!(e.lines().count() >= 2, "the error itself follows: {e}");
    std::fs::remove_file(&bad).unwrap();
}

#[test]
fn capture_writes_a_pcap_that_tcpdump_reads() {
    let d = Daemon::start("capture", Fake::default());
    let file = temp("cap.pcap");
    let f = file.to_str().unwrap();
    let out = ok(&d.ctl(&[
        "capture",
        "--interface",
        "lan",
        "--count",
        "2",
        "--write",
        f,
        "--host",
        "172.25.46.1",
    ]));
    assert_eq!(out, format!("2 frames written to {f} (1 dropped)\n"));
    let reqs = d.requests();
    assert_eq!(reqs[0].cmd, "capture.start");
    assert_eq!(
        reqs[0].args,
        json!({"interface": "lan", "count": 2, "host": "172.25.46.1"})
    );
    assert_eq!(reqs.last().unwrap().cmd, "capture.stop");
    assert!(reqs.iter().filter(|r| r.cmd == "capture.poll").count() >= 3);

    let td = Proc::new("tcpdump")
        .arg("-r")
        .arg(&file)
        .arg("-nn")
        .output()
        .expect("tcpdump is installed (scripts/setup)");
    assert!(td.status.success(), "{}", stderr(&td));
    let text = stdout(&td);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].contains("IP 192.168.0.100.40002 > 172.25.46.1.5001: UDP"),
        "{text}"
    );
    assert!(
        lines[1].contains("IP 192.168.0.100.40003 > 172.25.46.1.5001: UDP"),
        "{text}"
    );
    std::fs::remove_file(&file).unwrap();
}

#[test]
fn a_refused_capture_leaves_no_file_behind() {
    let fake = Fake {
        capture_busy: true,
        ..Fake::default()
    };
    let d = Daemon::start("capture-busy", fake);
    let file = temp("busy.pcap");
    let o = d.ctl(&["capture", "--count", "2", "--write", file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        "tandemctl: another capture is running (started by another tandemctl?)\n"
    );
    assert!(!file.exists());
}

#[test]
fn ctrl_c_ends_a_capture_cleanly() {
    let fake = Fake {
        endless: true,
        ..Fake::default()
    };
    let d = Daemon::start("capture-int", fake);
    let file = temp("int.pcap");
    let child = Proc::new(env!("CARGO_BIN_EXE_tandemctl"))
        .arg("--socket")
        .arg(&d.path)
        .args(["capture", "--count", "100", "--write"])
        .arg(&file)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let polls = || {
        d.requests()
            .iter()
            .filter(|r| r.cmd == "capture.poll")
            .count()
    };
    let t0 = std::time::Instant::now();
    while polls() < 4 {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "tandemctl never polled"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = i32::try_from(child.id()).unwrap();
    // SAFETY: kill() with our own child's pid and a valid signal number.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let o = child.wait_with_output().unwrap();
    let f = file.to_str().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), format!("2 frames written to {f} (1 dropped)\n"));
    assert_eq!(stderr(&o), "tandemctl: interrupted with 2 of 100 frames\n");
    assert_eq!(d.requests().last().unwrap().cmd, "capture.stop");
    let td = Proc::new("tcpdump")
        .arg("-r")
        .arg(&file)
        .arg("-nn")
        .output()
        .unwrap();
    assert!(td.status.success(), "{}", stderr(&td));
    assert_eq!(stdout(&td).lines().count(), 2);
    std::fs::remove_file(&file).unwrap();
}

#[test]
fn states_kill_sends_its_filters_and_answers_killed() {
    let d = Daemon::start("states-kill", Fake::default());
    let out = ok(&d.ctl(&[
        "states",
        "kill",
        "--addr",
        "192.168.0.100",
        "--port",
        "80",
        "--proto",
        "tcp",
        "--rule",
        "2",
        "--json",
    ]));
    assert_eq!(out.trim(), r#"{"killed":3}"#);
    let out = ok(&d.ctl(&["states", "kill", "--all"]));
    assert_eq!(out, "7 states killed\n");
    let out = ok(&d.ctl(&["states", "kill", "--rule", "77"]));
    assert_eq!(
        out,
        "3 states killed\nnote: no rule 77 in the rules in force\n"
    );
    let reqs = d.requests();
    assert_eq!(reqs.len(), 3);
    assert_eq!(reqs[0].cmd, "states.kill");
    assert_eq!(
        reqs[0].args,
        json!({"addr": "192.168.0.100", "port": 80, "proto": "tcp", "rule": 2})
    );
    assert_eq!(reqs[1].args, json!({"all": true}));
}

#[test]
fn states_kill_without_a_filter_or_with_all_and_a_filter_is_refused_before_sending() {
    let d = Daemon::start("states-kill-refused", Fake::default());
    let o = d.ctl(&["states", "kill"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("give a filter"), "{}", stderr(&o));
    let o = d.ctl(&["states", "kill", "--all", "--port", "80"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--all"), "{}", stderr(&o));
    // With --json the error is JSON on stdout as well (a new user's review).
    let o = d.ctl(&["states", "kill", "--json"]);
    assert!(!o.status.success());
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("give a filter")),
        "{v}"
    );
    // Filters of `states` given before `kill` would be silently ignored: refused instead.
    let o = d.ctl(&["states", "--addr", "192.168.0.100", "kill", "--all"]);
    assert!(!o.status.success(), "{}", stdout(&o));
    assert!(d.requests().is_empty(), "nothing reached the daemon");
}
