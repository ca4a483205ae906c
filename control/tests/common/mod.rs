//! Shared by the lab tests: tandemd in a box's namespace, driven with tandemctl.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use tandem_testlab::{wait_until, Lab, Node, Proc};

pub const LONG: Duration = Duration::from_secs(30);

/// The distinct CARP states of a box's VIPs (`MASTER`, `BACKUP`, ...), from `tandemctl carp`.
pub fn statuses(fw: &Fw) -> BTreeSet<String> {
    fw.json(&["carp"])["vips"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["status"].as_str().map(str::to_string))
        .collect()
}

/// The status of every VIP of a box: [(interface, vhid, status)], in `tandemctl carp`'s order.
pub fn vip_statuses(fw: &Fw) -> Vec<(String, u64, String)> {
    let carp = fw.json(&["carp"]);
    carp["vips"]
        .as_array()
        .unwrap_or_else(|| panic!("carp --json has no vips: {carp}"))
        .iter()
        .map(|v| {
            (
                v["interface"].as_str().unwrap_or_default().to_string(),
                v["vhid"].as_u64().unwrap_or_default(),
                v["status"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// Whether every VIP of the box is in `status` (and it has at least one).
pub fn is(fw: &Fw, status: &str) -> bool {
    statuses(fw) == BTreeSet::from([status.to_string()])
}

/// The seed's steady state: A master and B backup of every VIP, and B's bulk update from A
/// done (so B holds A's states). Panics, with what each box says, if that does not come.
pub fn wait_for_pair(a: &Fw, b: &Fw) {
    assert!(
        wait_until(LONG, POLL, || is(a, "MASTER") && is(b, "BACKUP")),
        "A {:?} B {:?}",
        statuses(a),
        statuses(b)
    );
    assert!(
        wait_until(LONG, POLL, || b.json(&["sync"])["bulk_status"] == "done"),
        "B's bulk update did not complete: {}",
        b.json(&["sync"])
    );
}
pub const POLL: Duration = Duration::from_millis(50);

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn config(name: &str) -> String {
    workspace()
        .join("scripts/lab-configs")
        .join(name)
        .display()
        .to_string()
}

/// tandemd in a box's namespace, and tandemctl against it.
pub struct Fw<'a> {
    pub lab: &'a Lab,
    pub node: Node,
    pub socket: String,
    pub daemon: Option<Proc>,
}

impl<'a> Fw<'a> {
    pub fn start(lab: &'a Lab, node: Node, config_file: &str) -> Fw<'a> {
        let socket = lab
            .log_dir()
            .join(format!("{}.sock", node.name()))
            .display()
            .to_string();
        let mut b = Fw {
            lab,
            node,
            socket,
            daemon: None,
        };
        b.spawn(config_file);
        b
    }

    pub fn spawn(&mut self, config_file: &str) {
        let daemon = self
            .lab
            .spawn(
                self.node,
                &[
                    env!("CARGO_BIN_EXE_tandemd"),
                    "--config",
                    config_file,
                    "--socket",
                    &self.socket,
                    "--state-dir",
                    &self.state_dir(),
                ],
            )
            .expect("tandemd starts");
        self.daemon = Some(daemon);
        let up = wait_until(LONG, POLL, || self.ctl(&["status"]).0);
        let log = self.daemon.as_ref().map(Proc::log).unwrap_or_default();
        assert!(
            up,
            "tandemd did not answer on {} within {LONG:?}; its log:\n{log}",
            self.socket
        );
    }

    /// Where this box keeps state across restarts (maintenance mode), inside the lab's logs.
    pub fn state_dir(&self) -> String {
        self.lab
            .log_dir()
            .join(format!("{}-state", self.node.name()))
            .display()
            .to_string()
    }

    /// Runs tandemctl (from the root namespace: the socket is a file, not an address).
    pub fn ctl(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_tandemctl"))
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tandemctl runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        let (ok, text) = self.ctl(&a);
        assert!(ok, "tandemctl {args:?} failed: {text}");
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("tandemctl {args:?}: not JSON ({e}): {text}"))
    }

    /// `tandemctl ARGS --json`, whatever its exit status (commands such as `doctor` exit 1 on
    /// what they report).
    pub fn json_any(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        let (_, text) = self.ctl(&a);
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("tandemctl {args:?}: not JSON ({e}): {text}"))
    }

    pub fn counter(&self, name: &str) -> u64 {
        let stats = self.json(&["stats"]);
        find_counter(&stats, name).unwrap_or_else(|| panic!("no counter {name} in {stats}"))
    }

    pub fn kill9(&mut self) {
        let d = self.daemon.take().expect("a daemon runs");
        let _ = Command::new("kill")
            .args(["-9", &d.id().to_string()])
            .status();
        drop(d);
    }
}

/// A counter by name, wherever `tandemctl stats --json` puts it (an object of name: value).
pub fn find_counter(v: &Value, name: &str) -> Option<u64> {
    match v {
        Value::Object(m) => m
            .get(name)
            .and_then(Value::as_u64)
            .or_else(|| m.values().find_map(|x| find_counter(x, name))),
        Value::Array(a) => a.iter().find_map(|x| find_counter(x, name)),
        _ => None,
    }
}

pub fn sha256_of(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// A file of random bytes served over HTTP by the lab's server (python's http.server on
/// 172.25.46.1:8080), up and answering when returned.
pub struct Served {
    pub file: PathBuf,
    pub url: String,
    pub server: Proc,
}

/// Serves `megabytes` of random data as `/blob` from the server's namespace.
pub fn serve_blob(lab: &Lab, megabytes: u32) -> Served {
    let dir = lab.log_dir().join("www");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("blob");
    let st = Command::new("head")
        .args(["-c", &format!("{megabytes}M"), "/dev/urandom"])
        .stdout(std::fs::File::create(&file).unwrap())
        .status()
        .unwrap();
    assert!(st.success(), "cannot write the file to serve");
    let server_ip = tandem_testlab::topology::SERVER_IP.to_string();
    let server = lab
        .spawn(
            Node::Server,
            &[
                "python3",
                "-m",
                "http.server",
                "8080",
                "--bind",
                &server_ip,
                "--directory",
                &dir.display().to_string(),
            ],
        )
        .unwrap();
    let url = format!("http://{server_ip}:8080/blob");
    assert!(
        wait_until(LONG, POLL, || lab
            .exec(
                Node::Server,
                &["curl", "-sf", "-o", "/dev/null", "-r", "0-0", &url]
            )
            .status
            .success()),
        "the server's HTTP server did not come up: {}",
        server.log()
    );
    Served { file, url, server }
}

/// Both boxes with the seed's configs, B started first; A master of both VIPs, B backup.
pub fn cluster(lab: &Lab) -> (Fw<'_>, Fw<'_>) {
    let b = Fw::start(lab, Node::Fwb, &config("fw-b.toml"));
    let a = Fw::start(lab, Node::Fwa, &config("fw-a.toml"));
    assert!(
        wait_until(LONG, POLL, || is(&a, "MASTER")),
        "A: {:?}",
        vip_statuses(&a)
    );
    assert!(
        wait_until(LONG, POLL, || is(&b, "BACKUP")),
        "B: {:?}",
        vip_statuses(&b)
    );
    (a, b)
}

/// The sequence numbers a ping log shows answered, in order.
pub fn ping_answers(log: &str) -> Vec<u64> {
    log.lines()
        .filter_map(|l| l.split("icmp_seq=").nth(1))
        .filter_map(|s| s.split_whitespace().next()?.parse().ok())
        .collect()
}

/// The longest run of unanswered sequence numbers between two answered ones in a ping log.
pub fn longest_ping_gap(log: &str) -> u64 {
    ping_answers(log)
        .windows(2)
        .map(|w| w[1].saturating_sub(w[0] + 1))
        .max()
        .unwrap_or(0)
}

/// A ping from the client to the server every `interval` (ping's `-i`), read while it runs.
pub struct Pinger {
    proc: Proc,
}

impl Pinger {
    pub fn start(lab: &Lab, interval: &str) -> Pinger {
        let server = tandem_testlab::topology::SERVER_IP.to_string();
        let proc = lab
            .spawn(Node::Client, &["ping", "-i", interval, "-W", "1", &server])
            .unwrap();
        Pinger { proc }
    }

    /// The sequence numbers answered so far.
    pub fn answered(&self) -> Vec<u64> {
        ping_answers(&self.proc.log())
    }

    /// The longest run of unanswered sequence numbers between two answered ones.
    pub fn longest_gap(&self) -> u64 {
        longest_ping_gap(&self.proc.log())
    }
}
