//! What a control socket client cannot do to the daemon: grow its memory by not reading, hold
//! the control loop with pipelined requests, or keep the connection slots from root's
//! tandemctl. Each test drives the server on its own thread so that its state can be read.

use super::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// Answers every request with its args, counting them, after `delay`.
struct Counting {
    calls: Arc<AtomicU64>,
    delay: Duration,
}

impl Counting {
    fn new(delay: Duration) -> (Counting, Arc<AtomicU64>) {
        let calls = Arc::new(AtomicU64::new(0));
        let h = Counting {
            calls: calls.clone(),
            delay,
        };
        (h, calls)
    }
}

impl Handler for Counting {
    type Error = String;
    fn handle(&mut self, req: &Request) -> Result<Value, String> {
        std::thread::sleep(self.delay);
        self.calls.fetch_add(1, Ordering::Relaxed);
        Ok(req.args.clone())
    }
}

fn temp_socket(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("tandem-limits-{}-{name}.sock", std::process::id()))
}

/// Polls `server` until `done` holds, for at most 30 s; whether it held.
fn poll_until(
    server: &mut ControlServer,
    h: &mut Counting,
    mut done: impl FnMut(&ControlServer) -> bool,
) -> bool {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(30) {
        server.poll_once(Duration::from_millis(10), h).unwrap();
        if done(server) {
            return true;
        }
    }
    false
}

/// A client writes requests each asking for a 16 KiB reply and never reads. The daemon read
/// and answered them all, holding every reply (95 MiB for 96 MiB sent); it now reads no
/// further than the next request while a reply waits, and holds at most one.
#[test]
fn a_client_that_never_reads_holds_one_reply_at_most() {
    let path = temp_socket("noread");
    let mut server = ControlServer::bind(&path).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let (p, d) = (path.clone(), done.clone());
    let client = std::thread::spawn(move || {
        let mut s = StdUnixStream::connect(&p).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(3))).unwrap();
        let line = format!(
            "{{\"cmd\":\"echo\",\"args\":\"{}\"}}\n",
            "x".repeat(16 * 1024)
        );
        let mut sent = 0usize;
        for _ in 0..6 * 1024 {
            if s.write_all(line.as_bytes()).is_err() {
                break; // the daemon stopped reading: held by the socket's buffers
            }
            sent += line.len();
        }
        d.store(true, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(500));
        sent
    });
    let (mut h, calls) = Counting::new(Duration::ZERO);
    let mut peak = 0;
    assert!(poll_until(&mut server, &mut h, |server| {
        let held = server.conns.values().map(|c| c.outbuf.len()).max();
        peak = peak.max(held.unwrap_or(0));
        done.load(Ordering::Relaxed)
    }));
    let sent = client.join().unwrap();
    let answered = calls.load(Ordering::Relaxed);
    assert!(
        sent < 16 << 20,
        "the client wrote {sent} bytes: nothing held it back"
    );
    assert!(
        peak <= 17 * 1024,
        "the daemon held {peak} bytes of replies for a client that never reads"
    );
    // What the socket's buffers hold, not what was sent.
    assert!(answered < 100, "{answered} requests answered");
}

/// Sixteen clients, each with its socket full of requests: one turn of the control loop
/// answered every one of them (206,352 in one `poll_once`). A turn now answers for at most
/// TURN_BUDGET, in turn across the connections, and every client is served over the turns.
#[test]
fn one_turn_answers_for_a_bounded_time_and_every_client_in_turn() {
    let path = temp_socket("batch");
    let mut server = ControlServer::bind(&path).unwrap();
    let (mut h, calls) = Counting::new(Duration::from_millis(10));
    let mut clients: Vec<StdUnixStream> = (0..16)
        .map(|_| StdUnixStream::connect(&path).unwrap())
        .collect();
    assert!(poll_until(&mut server, &mut h, |s| s.conns.len() == 16));
    for (i, s) in clients.iter_mut().enumerate() {
        let line = format!("{{\"cmd\":\"echo\",\"args\":{i}}}\n");
        s.write_all(line.repeat(20).as_bytes()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    }
    // Every client's first request read, at least one answered.
    assert!(poll_until(&mut server, &mut h, |s| s.ready.len() >= 15));
    for _ in 0..5 {
        let before = calls.load(Ordering::Relaxed);
        let t = Instant::now();
        server.poll_once(Duration::from_millis(10), &mut h).unwrap();
        let (took, answered) = (t.elapsed(), calls.load(Ordering::Relaxed) - before);
        assert!(
            (1..=6).contains(&answered),
            "one turn answered {answered} requests of 10 ms"
        );
        assert!(took < Duration::from_millis(500), "one turn took {took:?}");
    }
    // Round robin: each client has its first answer before any has its third.
    assert!(poll_until(&mut server, &mut h, |_| calls
        .load(Ordering::Relaxed)
        >= 16));
    for (i, s) in clients.iter().enumerate() {
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).unwrap();
        let reply: Reply = serde_json::from_str(&line).unwrap();
        assert_eq!(reply.data, Some(serde_json::json!(i)));
    }
    assert!(calls.load(Ordering::Relaxed) < 16 * 3);
}

/// MAX_CONNECTIONS clients that connect and send nothing held every slot for ever, root's
/// tandemctl shut out ("no reply from tandemd ... Broken pipe"). A newcomer now takes the place
/// of the one that has waited longest.
#[test]
fn a_newcomer_takes_the_place_of_the_longest_idle_connection() {
    let path = temp_socket("full");
    let mut server = ControlServer::bind(&path).unwrap();
    let (mut h, _) = Counting::new(Duration::ZERO);
    let mut idle = Vec::new();
    for _ in 0..MAX_CONNECTIONS {
        idle.push(StdUnixStream::connect(&path).unwrap());
        // One at a time, so that the first is the longest idle.
        assert!(poll_until(&mut server, &mut h, |s| s.conns.len() == idle.len()));
    }
    let p = path.clone();
    let admin = std::thread::spawn(move || {
        request(
            &p,
            &Request::new("status", serde_json::json!("up")),
            Duration::from_secs(10),
        )
    });
    assert!(poll_until(&mut server, &mut h, |_| admin.is_finished()));
    assert_eq!(admin.join().unwrap().unwrap(), serde_json::json!("up"));
    assert_eq!(server.idle_closed, 1);
    assert_eq!(server.busy_refusals, 0);
    // The one closed is the first: it reads the end of its connection.
    let mut first = BufReader::new(&idle[0]);
    let mut line = String::new();
    idle[0]
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert_eq!(first.read_line(&mut line).unwrap(), 0);
}

/// A connection that sends nothing (or half a request) is closed past the idle deadline.
#[test]
fn a_connection_that_sends_no_whole_request_is_closed_past_the_idle_deadline() {
    let path = temp_socket("idle");
    let mut server = ControlServer::bind(&path).unwrap();
    server.set_idle(Duration::from_millis(300));
    let (mut h, _) = Counting::new(Duration::ZERO);
    let silent = StdUnixStream::connect(&path).unwrap();
    let mut half = StdUnixStream::connect(&path).unwrap();
    half.write_all(b"{\"cmd\":\"sta").unwrap();
    assert!(poll_until(&mut server, &mut h, |s| s.idle_closed == 2));
    assert!(server.conns.is_empty());
    drop(silent);
}

/// MAX_CONNECTIONS + 1 tandemctl-like clients connect and send their request before the control
/// loop's next turn (a burst: a monitoring system's parallel checks). Each gets its answer or
/// the "busy" reply; the newcomer past 32 closed a connection just accepted whose request sat
/// unread in its socket (it looked as if it waited for its client), its client reset without
/// a word, until a connection was read before it was judged.
#[test]
fn a_burst_past_the_limit_answers_every_client_or_says_busy() {
    let path = temp_socket("burst");
    let mut server = ControlServer::bind(&path).unwrap();
    let (mut h, _) = Counting::new(Duration::ZERO);
    let mut clients: Vec<StdUnixStream> = (0..=MAX_CONNECTIONS)
        .map(|i| {
            let mut s = StdUnixStream::connect(&path).unwrap();
            s.write_all(format!("{{\"cmd\":\"echo\",\"args\":{i}}}\n").as_bytes())
                .unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s
        })
        .collect();
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(500) {
        server.poll_once(Duration::from_millis(10), &mut h).unwrap();
    }
    let mut failed = Vec::new();
    for (i, s) in clients.iter_mut().enumerate() {
        let mut line = String::new();
        match BufReader::new(&*s).read_line(&mut line) {
            Ok(n) if n > 0 && serde_json::from_str::<Reply>(&line).is_ok() => {}
            r => failed.push((i, format!("{r:?}"))),
        }
    }
    assert!(
        failed.is_empty(),
        "clients with a request in hand got no reply, not even 'busy': {failed:?}"
    );
}

/// A request that takes the handler longer than the idle deadline (IDLE 10 s scaled to 300 ms
/// here) closed every connection accepted in that turn, though each sent its request at once:
/// `close_idle` judged them before their readable events were read.
#[test]
fn a_slow_handlers_turn_does_not_close_connections_whose_request_is_unread() {
    let path = temp_socket("slowturn");
    let mut server = ControlServer::bind(&path).unwrap();
    server.set_idle(Duration::from_millis(300));
    let (mut h, _) = Counting::new(Duration::from_millis(400));
    let mut a = StdUnixStream::connect(&path).unwrap();
    assert!(poll_until(&mut server, &mut h, |s| s.conns.len() == 1));
    a.write_all(b"{\"cmd\":\"echo\",\"args\":1}\n").unwrap();
    let mut b = StdUnixStream::connect(&path).unwrap();
    b.write_all(b"{\"cmd\":\"echo\",\"args\":2}\n").unwrap();
    b.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(2) {
        server.poll_once(Duration::from_millis(10), &mut h).unwrap();
    }
    let mut line = String::new();
    let r = BufReader::new(&b).read_line(&mut line);
    assert!(
        matches!(r, Ok(n) if n > 0),
        "B sent its request at once and got {r:?} (idle_closed {})",
        server.idle_closed
    );
}
