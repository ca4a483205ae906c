//! Operations in the lab: systemd's notify protocol (READY=1 once the box runs, WATCHDOG=1 from
//! the control loop) over a NOTIFY_SOCKET the test creates, and the metrics endpoint scraped by
//! a real Prometheus server (Debian's `prometheus`) running in the switch's namespace, read back
//! through Prometheus's HTTP API; `promtool check metrics` on the endpoint's own output.
//!
//! Needs root, `prometheus` and `promtool` (scripts/setup). Lab tests take the machine-wide lab
//! lock: one at a time.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{config, Fw, LONG, POLL};
use serde_json::Value;
use tandem_testlab::{require_root, wait_until, Lab, Node};

const SERVER_IP: &str = "172.25.46.1";
/// The switch's own address on the sync link, where Prometheus runs and scrapes from.
const SCRAPER: &str = "10.255.0.99";

/// A seed config with the metrics endpoint on the box's sync address.
fn with_metrics(lab: &Lab, name: &str, listen: &str) -> String {
    let text = std::fs::read_to_string(config(name)).unwrap();
    let to = lab.log_dir().join(name);
    std::fs::write(
        &to,
        format!("{text}\n[system.metrics]\nlisten = \"{listen}\"\n"),
    )
    .unwrap();
    to.display().to_string()
}

/// Runs `args` in the switch's namespace; its stdout.
fn in_switch(lab: &Lab, args: &[&str]) -> (bool, String) {
    let out = Command::new("ip")
        .args(["netns", "exec", &lab.ns(Node::Switch)])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// Prometheus's instant query `q`: (instance, labels, value) of each series.
fn query(lab: &Lab, q: &str) -> Vec<(String, Value, f64)> {
    let url = format!("http://{SCRAPER}:9090/api/v1/query");
    let (ok, out) = in_switch(
        lab,
        &[
            "curl",
            "-sS",
            "--max-time",
            "5",
            "--data-urlencode",
            &format!("query={q}"),
            &url,
        ],
    );
    if !ok {
        return Vec::new();
    }
    let v: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
    v["data"]["result"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let m = r["metric"].clone();
            let val = r["value"][1]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or(f64::NAN);
            (m["instance"].as_str().unwrap_or("").to_string(), m, val)
        })
        .collect()
}

fn value_of(series: &[(String, Value, f64)], instance: &str) -> Option<f64> {
    series.iter().find(|(i, _, _)| i == instance).map(|s| s.2)
}

#[test]
fn systemd_readiness_and_watchdog_and_prometheus_scrapes_both_boxes() {
    require_root();
    let lab = Lab::up("ops").unwrap();
    let a_file = with_metrics(&lab, "fw-a.toml", "10.255.0.1:9120");
    let b_file = with_metrics(&lab, "fw-b.toml", "10.255.0.2:9120");
    let b = Fw::start(&lab, Node::Fwb, &b_file);

    // A under a stand-in for systemd: its NOTIFY_SOCKET and a 1 s watchdog.
    let notify_path = lab.log_dir().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut a = Fw {
        lab: &lab,
        node: Node::Fwa,
        socket: lab.log_dir().join("fwa.sock").display().to_string(),
        daemon: None,
    };
    let notify_env = format!("NOTIFY_SOCKET={}", notify_path.display());
    let state_dir = a.state_dir();
    let daemon = lab
        .spawn(
            Node::Fwa,
            &[
                "env",
                &notify_env,
                "WATCHDOG_USEC=1000000",
                env!("CARGO_BIN_EXE_tandemd"),
                "--config",
                &a_file,
                "--socket",
                &a.socket,
                "--state-dir",
                &state_dir,
                "--log-format",
                "json",
            ],
        )
        .unwrap();
    // Like systemd, the test reads every notification for the daemon's whole life (a full
    // datagram queue would block the sender).
    let messages = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(Instant, String)>::new()));
    let reading = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let reader = {
        let (messages, reading) = (messages.clone(), reading.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while reading.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(n) = notify.recv(&mut buf) {
                    let m = String::from_utf8_lossy(&buf[..n]).into_owned();
                    messages.lock().unwrap().push((Instant::now(), m));
                }
            }
        })
    };
    let seen = |what: &str| {
        messages
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, m)| m.lines().any(|l| l == what))
            .count()
    };
    a.daemon = Some(daemon);
    assert!(
        wait_until(LONG, POLL, || seen("READY=1") > 0),
        "no READY=1 within {LONG:?}: {:?}; log:\n{}",
        messages.lock().unwrap(),
        a.daemon.as_ref().unwrap().log()
    );
    // READY means running: the socket answers and CARP has its VHIDs at once.
    let carp = a.json(&["carp"]);
    assert!(!carp["vips"].as_array().unwrap().is_empty(), "{carp}");
    // WATCHDOG=1 every half period, from the control loop: three more arrive, and no faster
    // than the half period allows.
    let before = seen("WATCHDOG=1");
    let start = std::time::Instant::now();
    assert!(
        wait_until(LONG, POLL, || seen("WATCHDOG=1") >= before + 3),
        "fewer than 3 WATCHDOG=1 at WATCHDOG_USEC=1 s: {:?}",
        messages.lock().unwrap()
    );
    let took = start.elapsed();
    let pings = seen("WATCHDOG=1") - before;
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(10),
        "3 WATCHDOG=1 took {took:?} at a 500 ms period: {:?}",
        messages.lock().unwrap()
    );

    assert!(
        wait_until(LONG, POLL, || {
            let m = |fw: &Fw| {
                fw.json(&["carp"])["vips"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v["status"].as_str().unwrap_or("").to_string())
                    .collect::<Vec<_>>()
            };
            m(&a).iter().all(|s| s == "MASTER") && m(&b).iter().all(|s| s == "BACKUP")
        }),
        "no election"
    );
    // A flow through the cluster: its state on A, synced to B.
    let _ping = lab
        .spawn(Node::Client, &["ping", "-i", "0.2", "-w", "120", SERVER_IP])
        .unwrap();
    assert!(wait_until(LONG, POLL, || a.json(&["states"])["count"]
        .as_u64()
        >= Some(1)
        && b.json(&["states"])["count"].as_u64() >= Some(1)));

    // The endpoint's own output passes promtool.
    let (ok, out) = in_switch(
        &lab,
        &["ip", "addr", "add", &format!("{SCRAPER}/24"), "dev", "sync"],
    );
    assert!(ok, "{out}");
    let (ok, text) = in_switch(
        &lab,
        &[
            "curl",
            "-sS",
            "--max-time",
            "5",
            "http://10.255.0.1:9120/metrics",
        ],
    );
    assert!(ok && text.contains("tandem_states "), "{text}");
    for name in [
        "tandem_drop_carp_ttl_total",
        "tandem_sync_rx_accepted_total",
        "tandem_carp_vhid_master",
        "tandem_xdp_rx_dropped_total",
        "tandem_states_by_protocol",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
    let metrics_file = lab.log_dir().join("fwa-metrics.txt");
    std::fs::write(&metrics_file, &text).unwrap();
    let check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&metrics_file).unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("promtool runs (scripts/setup installs prometheus)");
    assert!(
        check.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    // Garbage to the endpoint gets a 4xx, and the box does not mind.
    let (_, bad) = in_switch(
        &lab,
        &[
            "curl",
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "POST",
            "http://10.255.0.1:9120/metrics",
        ],
    );
    assert_eq!(bad.trim(), "405");

    // A real Prometheus in the switch's namespace scrapes both boxes every second.
    let prom_dir = lab.log_dir().join("prometheus");
    std::fs::create_dir_all(&prom_dir).unwrap();
    let prom_conf = prom_dir.join("prometheus.yml");
    std::fs::write(
        &prom_conf,
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: tandem\n    static_configs:\n      - targets: ['10.255.0.1:9120', '10.255.0.2:9120']\n",
    )
    .unwrap();
    let conf_arg = format!("--config.file={}", prom_conf.display());
    let data_arg = format!("--storage.tsdb.path={}", prom_dir.join("data").display());
    let listen_arg = format!("--web.listen-address={SCRAPER}:9090");
    let prometheus = lab
        .spawn(
            Node::Switch,
            &["prometheus", &conf_arg, &data_arg, &listen_arg],
        )
        .expect("prometheus starts (scripts/setup installs it)");
    let (ia, ib) = ("10.255.0.1:9120", "10.255.0.2:9120");
    let got = wait_until(Duration::from_secs(60), Duration::from_millis(500), || {
        let up = query(&lab, "up");
        value_of(&up, ia) == Some(1.0) && value_of(&up, ib) == Some(1.0)
    });
    if !got {
        let url = format!("http://{SCRAPER}:9090/api/v1/targets");
        let targets = in_switch(&lab, &["curl", "-sS", &url]).1;
        panic!("Prometheus does not scrape both boxes: {targets}");
    }

    // CARP as Prometheus sees it: A master of both VHIDs, B of none, never both.
    let master = query(&lab, "tandem_carp_vhid_master");
    for vhid in ["1", "2"] {
        let of = |inst: &str| {
            master
                .iter()
                .find(|(i, m, _)| i == inst && m["vhid"] == vhid)
                .map(|s| s.2)
        };
        assert_eq!(of(ia), Some(1.0), "A master of VHID {vhid}: {master:?}");
        assert_eq!(of(ib), Some(0.0), "B backup of VHID {vhid}: {master:?}");
    }
    assert!(query(&lab, "sum by (vhid) (tandem_carp_vhid_master) > 1").is_empty());
    // Per-VHID activity: A, the master, advertises both VHIDs; B heard them.
    let sent = query(&lab, "tandem_carp_vhid_adverts_sent_total > 0");
    assert_eq!(
        sent.iter().filter(|(i, _, _)| i == ia).count(),
        2,
        "{sent:?}"
    );
    let heard = query(&lab, "tandem_carp_vhid_adverts_received_total > 0");
    assert_eq!(
        heard.iter().filter(|(i, _, _)| i == ib).count(),
        2,
        "{heard:?}"
    );
    let state = query(&lab, "tandem_carp_vhid_state{state=\"BACKUP\"} == 1");
    assert!(
        state.iter().all(|(i, _, _)| i == ib) && state.len() == 2,
        "{state:?}"
    );
    // The state count of both boxes, the ping's state included on each.
    let states = query(&lab, "tandem_states");
    assert!(value_of(&states, ia) >= Some(1.0), "{states:?}");
    assert!(value_of(&states, ib) >= Some(1.0), "{states:?}");
    // State sync runs on both.
    let running = query(&lab, "tandem_sync_running == 1");
    assert_eq!(running.len(), 2, "{running:?}");
    // Each box hears the other on the idle sync link: keepalives, about one a second.
    let heard = query(&lab, "tandem_sync_peer_heard_seconds");
    assert!(value_of(&heard, ia).is_some_and(|v| v < 3.0), "{heard:?}");
    assert!(value_of(&heard, ib).is_some_and(|v| v < 3.0), "{heard:?}");
    // The alert examples of docs/metrics.md evaluate (and none fires here).
    for alert in [
        "sum by (vhid) (tandem_carp_vhid_master) > 1",
        "tandem_sync_lag_seconds > 2",
        "tandem_sync_peer_heard_seconds > 3",
        "tandem_sync_running == 0",
        "tandem_states / tandem_state_limit > 0.9",
        "tandem_carp_demotion > 0",
    ] {
        let (ok, out) = in_switch(
            &lab,
            &[
                "curl",
                "-sS",
                "--max-time",
                "5",
                "--data-urlencode",
                &format!("query={alert}"),
                &format!("http://{SCRAPER}:9090/api/v1/query"),
            ],
        );
        assert!(
            ok && out.contains("\"status\":\"success\""),
            "{alert}: {out}"
        );
        assert!(
            query(&lab, alert).is_empty(),
            "{alert} fires: {:?}",
            query(&lab, alert)
        );
    }
    drop(prometheus);
    assert!(Path::new(&prom_dir).join("data").exists());
    // A's log is JSON (libbpf's own lines aside), CARP transitions with their fields.
    let log = a.daemon.as_ref().unwrap().log();
    let events: Vec<Value> = log
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let to_master = events
        .iter()
        .filter(|e| e["fields"]["to"] == "Master" && e["fields"]["vhid"].is_u64())
        .count();
    assert_eq!(
        to_master, 2,
        "one transition to MASTER per VHID, with fields: {log}"
    );
    // Still fed after all this: the control loop never stalled.
    assert!(seen("WATCHDOG=1") > before + pings);
    drop((a, b));
    reading.store(false, std::sync::atomic::Ordering::Relaxed);
    reader.join().unwrap();
}
