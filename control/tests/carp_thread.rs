//! CARP on its own thread (issue 10.4): its timers and adverts run while the control thread
//! does nothing at all (a long table walk, a reload), and the control thread's requests are
//! answered through the handle.

use std::path::Path;
use std::time::{Duration, Instant};

use tandem_control::carp::machine::State;
use tandem_control::carp::thread::CarpHandle;
use tandem_control::compile::compile;
use tandem_control::config::load;
use tandem_dataplane::pipeline::Dataplane;
use tandem_dataplane::state::{StateTable, TableConfig};
use tandem_dataplane::wire::MacAddr;

#[test]
fn carp_runs_its_timers_while_the_control_thread_is_busy() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/lab-configs/fw-a.toml");
    let config = load(&path).unwrap();
    let mac = |_: &str| Some(MacAddr([2, 0, 0, 0, 0x0a, 1]));
    let compiled = compile(&config, 1, &mac).unwrap();
    // No OS devices: no link to poll (a link that cannot be read is down), frames still go out
    // through the dataplane interfaces' indices.
    let devices = vec![String::new(); compiled.devices.len()];
    let dp = Dataplane::new(compiled.generation, StateTable::new(TableConfig::default()));
    let (send, sent) = crossbeam_channel::bounded(1024);
    let (_frames_tx, frames) = crossbeam_channel::bounded(1024);
    let started = Instant::now();
    let mut carp =
        CarpHandle::start(&config, &devices, dp.clone(), send, None, frames, false).unwrap();
    // The control thread is busy: it does not touch the handle. Without a peer, A becomes
    // master of both VHIDs after master down (3 s) and advertises once a second.
    let deadline = started + Duration::from_secs(20);
    while !(dp.held.is_held(1) && dp.held.is_held(2) && sent.len() >= 4) {
        assert!(Instant::now() < deadline, "CARP did not run on its own");
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(3),
        "master before master down: {took:?}"
    );
    // Now the control thread asks.
    let reply = carp.status();
    assert!(
        reply.vips.iter().all(|v| v.state == State::Master),
        "{reply:?}"
    );
    let stats = carp.stats();
    assert!(
        stats.contains(&("carp_thread_running".to_string(), 1)),
        "{stats:?}"
    );
    assert!(stats
        .iter()
        .any(|(n, v)| n == "carp_adverts_sent" && *v >= 2));
    // Maintenance: the masters advertise skew 240 at once and stay master (no peer).
    carp.set_maintenance(true).unwrap();
    assert!(carp.status().maintenance);
    carp.stop();
    assert!(!carp.is_running());
    assert!(
        !dp.held.is_held(1) && !dp.held.is_held(2),
        "stop releases the VIPs"
    );
}
