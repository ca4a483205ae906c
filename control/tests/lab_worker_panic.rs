//! A worker that dies stops the box (issue 10.5): the seed's cluster in the lab, A's worker made
//! to panic through the test hook (`TANDEM_TEST_WORKER_PANIC_FILE`): tandemd on A must end at
//! once and not by a clean exit, and B must take both VIPs over and forward the client's pings.
//! Before the fix the worker thread died alone: A stayed MASTER and the pings stopped for good.
//!
//! Needs root. Lab tests take the machine-wide lab lock: one at a time.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use common::{config, Fw, LONG, POLL};
use tandem_dataplane::worker::PANIC_HOOK_ENV;
use tandem_testlab::topology::SERVER_IP;
use tandem_testlab::{require_root, wait_until, Lab, Node};

/// Master down at the seed's advbase 1, skew 1 (3 x 1 + 1/256 s), plus one advert interval
/// and the control loop's slack (as in lab_carp.rs).
const TAKEOVER: Duration = Duration::from_millis(3_004 + 1_004 + 500);

/// SIGABRT: what `std::process::abort` ends the process with.
const SIGABRT: i32 = 6;

fn statuses(fw: &Fw) -> Vec<String> {
    let carp = fw.json(&["carp"]);
    carp["vips"]
        .as_array()
        .unwrap_or_else(|| panic!("carp --json has no vips: {carp}"))
        .iter()
        .map(|v| v["status"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn wait_all(fw: &Fw, status: &str) -> bool {
    wait_until(LONG, POLL, || {
        let s = statuses(fw);
        !s.is_empty() && s.iter().all(|st| st == status)
    })
}

/// tandemd on `node` with the worker panic hook armed on `trigger`.
fn start_with_hook<'a>(lab: &'a Lab, node: Node, config_file: &str, trigger: &str) -> Fw<'a> {
    let socket = lab
        .log_dir()
        .join(format!("{}.sock", node.name()))
        .display()
        .to_string();
    let state_dir = lab
        .log_dir()
        .join(format!("{}-state", node.name()))
        .display()
        .to_string();
    let hook = format!("{PANIC_HOOK_ENV}={trigger}");
    let daemon = lab
        .spawn(
            node,
            &[
                "env",
                &hook,
                env!("CARGO_BIN_EXE_tandemd"),
                "--config",
                config_file,
                "--socket",
                &socket,
                "--state-dir",
                &state_dir,
            ],
        )
        .expect("tandemd starts");
    let fw = Fw {
        lab,
        node,
        socket,
        daemon: Some(daemon),
    };
    assert!(
        wait_until(LONG, POLL, || fw.ctl(&["status"]).0),
        "tandemd did not answer; its log:\n{}",
        fw.daemon.as_ref().map(|d| d.log()).unwrap_or_default()
    );
    fw
}

#[test]
fn a_worker_panic_stops_the_box_and_the_peer_takes_over() {
    require_root();
    let lab = Lab::up("wpanic").expect("lab up");
    let trigger = lab.log_dir().join("panic-now").display().to_string();
    let b = Fw::start(&lab, Node::Fwb, &config("fw-b.toml"));
    let mut a = start_with_hook(&lab, Node::Fwa, &config("fw-a.toml"), &trigger);
    assert!(wait_all(&a, "MASTER"), "A: {:?}", statuses(&a));
    assert!(wait_all(&b, "BACKUP"), "B: {:?}", statuses(&b));
    assert!(
        lab.ping(Node::Client, &SERVER_IP.to_string(), 3),
        "ping through A"
    );

    // The hook is armed but idle: A keeps running.
    let daemon = a.daemon.as_mut().expect("A runs");
    assert!(daemon.try_wait().expect("try_wait").is_none());

    let t0 = Instant::now();
    std::fs::write(&trigger, b"").unwrap();
    let status = daemon
        .wait_timeout(LONG)
        .expect("wait")
        .unwrap_or_else(|| panic!("A still runs after its worker panicked:\n{}", daemon.log()));
    let log = daemon.log();
    assert!(!status.success(), "A must not exit cleanly: {status:?}");
    assert_eq!(
        status.signal(),
        Some(SIGABRT),
        "A aborts: {status:?}\n{log}"
    );
    assert!(
        log.contains("test panic") && log.contains("panicked; aborting"),
        "the panic and the abort are in A's log:\n{log}"
    );

    // B takes over as after kill -9 and forwards.
    assert!(wait_all(&b, "MASTER"), "B: {:?}", statuses(&b));
    let took = t0.elapsed();
    assert!(
        took <= TAKEOVER + Duration::from_secs(1),
        "B took {took:?} to become master"
    );
    assert!(
        lab.ping(Node::Client, &SERVER_IP.to_string(), 3),
        "ping through B"
    );
    a.daemon = None;
}
