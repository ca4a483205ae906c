//! The Prometheus endpoint: `GET /metrics` on `[system.metrics] listen`, on a thread of its own.
//!
//! Nothing here can stall the box. The endpoint never reads a source itself: it asks the control
//! loop for a fresh [`Snapshot`](super::Snapshot) (a flag the loop looks at every round, 20 ms)
//! and waits for it at most [`FRESH_WAIT`], serving the previous one if the loop is busy. At most
//! [`MAX_CONNECTIONS`] scrapes run at once, [`MAX_PER_SOURCE`] from one address (so that one
//! client holding connections open cannot shut Prometheus out), each on a short-lived thread
//! with one deadline, [`IO_TIMEOUT`], for the whole exchange (a reader draining a byte at a time
//! is cut off). When all are taken, a newcomer takes the place of the oldest connection that has
//! not yet sent its request (clients from a few addresses that connect, send nothing and
//! reconnect would otherwise keep Prometheus out, see `crate::unproven`); with none such, it gets
//! a 503 at once, counted. A request is read up to
//! [`MAX_REQUEST`] bytes; anything but `GET /metrics` gets a 4xx answer. The state census (a
//! walk of the whole table) is made at most once per [`CENSUS_MAX_AGE`], whatever the number of
//! scrapes.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::unproven::{Room, Unproven};

/// Scrapes served at once; more are refused, unless one of them has not sent its request yet.
pub const MAX_CONNECTIONS: usize = 8;
/// Scrape threads at most, counting those ended for a newcomer and not yet gone.
const MAX_THREADS: usize = 2 * MAX_CONNECTIONS;
/// Scrapes served at once from one address (Prometheus runs one at a time per target).
pub const MAX_PER_SOURCE: usize = 3;
/// How old a state census may be when served (it walks the whole table).
pub const CENSUS_MAX_AGE: Duration = Duration::from_secs(5);
/// The longest request head read.
pub const MAX_REQUEST: usize = 8192;
/// How long a scraper may take, from accept to its last byte read.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a scrape waits for the control loop's fresh snapshot.
pub const FRESH_WAIT: Duration = Duration::from_millis(1000);

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The endpoint's own counters.
#[derive(Debug, Default)]
pub struct ServerCounters {
    pub requests: AtomicU64,
    pub refused_busy: AtomicU64,
    pub bad_requests: AtomicU64,
    pub stale: AtomicU64,
}

#[derive(Debug, Default)]
struct Shared {
    wanted: AtomicBool,
    /// The last snapshot and when the control loop made it.
    latest: Mutex<Option<(Instant, Arc<super::Snapshot>)>>,
    fresh: Condvar,
    active: AtomicUsize,
    stop: AtomicBool,
    counters: ServerCounters,
    /// The state table, walked by the scrape thread itself ([`super::collect::state_census`]).
    states: Option<Arc<tandem_dataplane::state::StateTable>>,
    /// The last census and when it was made; the lock also makes concurrent scrapes wait for
    /// one walk instead of each making its own.
    census: Mutex<Option<(Instant, Arc<super::Snapshot>)>>,
    /// Scrapes running per source address.
    per_source: Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
    /// Scrapes whose request has not arrived yet.
    unproven: Unproven<std::net::IpAddr>,
}

/// The running endpoint.
#[derive(Debug)]
pub struct MetricsServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Binds `addr` and starts the accept thread. With `states`, each scrape adds the state
    /// census, walked on the scrape's own thread.
    pub fn start(
        addr: SocketAddr,
        states: Option<Arc<tandem_dataplane::state::StateTable>>,
    ) -> std::io::Result<MetricsServer> {
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            states,
            ..Shared::default()
        });
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name("tandem-metrics".into())
            .spawn(move || accept_loop(&listener, &sh))?;
        tracing::info!(listen = %addr, "metrics endpoint ready");
        Ok(MetricsServer {
            shared,
            addr,
            thread: Some(thread),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether a scrape waits for a snapshot (the control loop then calls [`Self::publish`]).
    pub fn wanted(&self) -> bool {
        self.shared.wanted.load(Ordering::Acquire)
    }

    /// Hands a fresh snapshot to the waiting scrapes.
    pub fn publish(&self, snapshot: super::Snapshot) {
        self.shared.wanted.store(false, Ordering::Release);
        if let Ok(mut l) = self.shared.latest.lock() {
            *l = Some((Instant::now(), Arc::new(snapshot)));
        }
        self.shared.fresh.notify_all();
    }

    /// The endpoint's own counters, added to a snapshot.
    pub fn add_to(&self, s: &mut super::Snapshot) {
        let c = &self.shared.counters;
        let k = super::Kind::Counter;
        s.add(
            "metrics_requests",
            "Requests to the metrics endpoint.",
            k,
            c.requests.load(Ordering::Relaxed),
        );
        s.add(
            "metrics_refused_busy",
            "Metrics connections refused: too many at once.",
            k,
            c.refused_busy.load(Ordering::Relaxed),
        );
        s.add(
            "metrics_bad_requests",
            "Metrics requests answered 4xx (not GET /metrics, malformed, timed out).",
            k,
            c.bad_requests.load(Ordering::Relaxed),
        );
        s.add(
            "metrics_stale",
            "Scrapes served the previous snapshot: the control loop was busy.",
            k,
            c.stale.load(Ordering::Relaxed),
        );
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    while !shared.stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, from)) => {
                let Some(slot) = Slot::take(shared, from.ip(), &stream) else {
                    shared.counters.refused_busy.fetch_add(1, Ordering::Relaxed);
                    busy(stream);
                    continue;
                };
                let sh = shared.clone();
                // A failed spawn drops the closure, and with it the slot.
                let _ = std::thread::Builder::new()
                    .name("tandem-scrape".into())
                    .spawn(move || {
                        serve(stream, &sh, &slot);
                    });
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => {
                tracing::warn!("metrics endpoint: accept: {e}");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

/// A running scrape's place in the limits; given back when dropped, even if the scrape panics.
struct Slot {
    shared: Arc<Shared>,
    from: std::net::IpAddr,
    /// Its place among the scrapes whose request has not arrived.
    ticket: u64,
}

impl Slot {
    /// A place for a scrape from `from` on `stream`, if the limits leave one or a scrape that
    /// has not sent its request yet can be ended for it.
    fn take(shared: &Arc<Shared>, from: std::net::IpAddr, stream: &TcpStream) -> Option<Slot> {
        let mut per = shared.per_source.lock().unwrap_or_else(|e| e.into_inner());
        let n = per.get(&from).copied().unwrap_or(0);
        // Only the accept thread takes slots: the count can only fall meanwhile.
        let running = shared.active.load(Ordering::Acquire);
        if n >= MAX_PER_SOURCE || running >= MAX_THREADS {
            return None;
        }
        let room = Room {
            own_source: false,
            full: running >= MAX_CONNECTIONS,
        };
        let admitted = shared.unproven.admit(from, stream, room)?;
        per.insert(from, n + 1);
        shared.active.fetch_add(1, Ordering::AcqRel);
        Some(Slot {
            shared: shared.clone(),
            from,
            ticket: admitted.ticket,
        })
    }

    /// The scrape's request is in (or never will be): no newcomer ends it now.
    fn proven(&self) {
        self.shared.unproven.proven(self.ticket);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.proven();
        let mut per = self
            .shared
            .per_source
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = per.get_mut(&self.from) {
            *n -= 1;
            if *n == 0 {
                per.remove(&self.from);
            }
        }
        self.shared.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A refused connection gets a 503 if its socket takes it at once (never waits on it).
fn busy(stream: TcpStream) {
    let _ = stream.set_nonblocking(true);
    let _ = (&stream).write_all(
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nConnection: close\r\n\r\nbusy\n",
    );
}

/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    /// `/metrics`, in OpenMetrics if the Accept header asks for it, else the classic format.
    Metrics {
        openmetrics: bool,
    },
    NotFound,
    BadMethod,
    Bad,
}

/// Reads the request line of `head` (the bytes up to the blank line, or what arrived).
fn route(head: &[u8]) -> Route {
    let Some(line) = head.split(|&b| b == b'\n').next() else {
        return Route::Bad;
    };
    let Ok(line) = std::str::from_utf8(line) else {
        return Route::Bad;
    };
    let mut parts = line.trim_end_matches('\r').split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Route::Bad;
    };
    if !version.starts_with("HTTP/1.") || parts.next().is_some() {
        return Route::Bad;
    }
    if method != "GET" {
        return Route::BadMethod;
    }
    let path = target.split('?').next().unwrap_or("");
    if path == "/metrics" {
        let accept = String::from_utf8_lossy(head).to_ascii_lowercase();
        Route::Metrics {
            openmetrics: accept.contains("application/openmetrics-text"),
        }
    } else {
        Route::NotFound
    }
}

fn read_head(stream: &mut TcpStream, deadline: Instant) -> Option<Vec<u8>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && !buf.windows(2).any(|w| w == b"\n\n") {
        let left = deadline.checked_duration_since(Instant::now())?;
        if buf.len() >= MAX_REQUEST || left.is_zero() {
            return None;
        }
        let _ = stream.set_read_timeout(Some(left));
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    Some(buf)
}

/// Writes `bytes` by `deadline`, or gives up: a reader that drains slowly is cut off.
fn write_by(stream: &mut TcpStream, mut bytes: &[u8], deadline: Instant) -> bool {
    while !bytes.is_empty() {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            return false;
        };
        if left.is_zero() || stream.set_write_timeout(Some(left)).is_err() {
            return false;
        }
        match stream.write(&bytes[..bytes.len().min(64 * 1024)]) {
            Ok(0) | Err(_) => return false,
            Ok(n) => bytes = &bytes[n..],
        }
    }
    true
}

fn serve(mut stream: TcpStream, shared: &Shared, slot: &Slot) {
    let deadline = Instant::now() + IO_TIMEOUT;
    let _ = stream.set_nonblocking(false);
    shared.counters.requests.fetch_add(1, Ordering::Relaxed);
    let head = read_head(&mut stream, deadline);
    slot.proven();
    let route = head.map_or(Route::Bad, |h| route(&h));
    let (status, ctype, body): (&str, &str, String) = match route {
        Route::Metrics { openmetrics } => match snapshot(shared) {
            Some(s) if openmetrics => ("200 OK", OPENMETRICS, s.openmetrics()),
            Some(s) => ("200 OK", TEXT, s.text()),
            None => (
                "503 Service Unavailable",
                "text/plain",
                "no snapshot yet\n".into(),
            ),
        },
        Route::NotFound => ("404 Not Found", "text/plain", "only /metrics here\n".into()),
        Route::BadMethod => ("405 Method Not Allowed", "text/plain", "GET only\n".into()),
        Route::Bad => ("400 Bad Request", "text/plain", "bad request\n".into()),
    };
    if !matches!(route, Route::Metrics { .. }) {
        shared.counters.bad_requests.fetch_add(1, Ordering::Relaxed);
    }
    let header = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if write_by(&mut stream, header.as_bytes(), deadline) {
        write_by(&mut stream, body.as_bytes(), deadline);
    }
}

/// A snapshot made after this request arrived, or the previous one if the control loop does not
/// answer in [`FRESH_WAIT`].
fn snapshot(shared: &Shared) -> Option<Arc<super::Snapshot>> {
    let asked = Instant::now();
    shared.wanted.store(true, Ordering::Release);
    let guard = shared.latest.lock().ok()?;
    let (guard, _) = shared
        .fresh
        .wait_timeout_while(guard, FRESH_WAIT, |l| {
            l.as_ref().is_none_or(|(t, _)| *t < asked)
        })
        .ok()?;
    let (t, snap) = guard.as_ref()?;
    if *t < asked {
        shared.counters.stale.fetch_add(1, Ordering::Relaxed);
    }
    let snap = snap.clone();
    drop(guard);
    match &shared.states {
        Some(table) => {
            let mut s = (*snap).clone();
            s.extend(&census(shared, table));
            Some(Arc::new(s))
        }
        None => Some(snap),
    }
}

/// The state census, walked at most once per [`CENSUS_MAX_AGE`] (scrapes meanwhile, and those
/// waiting for the walk, share it).
fn census(shared: &Shared, table: &tandem_dataplane::state::StateTable) -> Arc<super::Snapshot> {
    let mut cached = shared.census.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((t, c)) = cached.as_ref() {
        if t.elapsed() < CENSUS_MAX_AGE {
            return c.clone();
        }
    }
    let mut c = super::Snapshot::default();
    super::collect::state_census(table, &mut c);
    let c = Arc::new(c);
    *cached = Some((Instant::now(), c.clone()));
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let (om, classic) = (
            Route::Metrics { openmetrics: true },
            Route::Metrics { openmetrics: false },
        );
        assert_eq!(route(b"GET /metrics HTTP/1.1\r\n\r\n"), classic);
        assert_eq!(route(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n"), classic);
        let prom = b"GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text;version=1.0.0,text/plain;q=0.5\r\n\r\n";
        assert_eq!(route(prom), om);
        assert_eq!(route(b"GET / HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(route(b"POST /metrics HTTP/1.1\r\n\r\n"), Route::BadMethod);
        assert_eq!(route(b"\xff\xfe\r\n\r\n"), Route::Bad);
        assert_eq!(route(b"GET /metrics\r\n\r\n"), Route::Bad);
        assert_eq!(route(b""), Route::Bad);
    }

    fn get(addr: SocketAddr, req: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(req).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    /// Waits until the endpoint serves exactly `n` connections (accepted, or given back).
    fn wait_active(server: &MetricsServer, n: usize) {
        let t = Instant::now();
        while server.shared.active.load(Ordering::Acquire) != n {
            assert!(t.elapsed() < IO_TIMEOUT, "never {n} connections at once");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// A stand-in for the control loop: publishes `snapshot()` whenever a scrape asks, every
    /// 20 ms, until `stop`.
    fn control_loop(
        server: &Arc<MetricsServer>,
        stop: &Arc<AtomicBool>,
        mut snapshot: impl FnMut() -> crate::metrics::Snapshot + Send + 'static,
    ) -> std::thread::JoinHandle<()> {
        let (srv, st) = (server.clone(), stop.clone());
        std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                if srv.wanted() {
                    srv.publish(snapshot());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    }

    #[test]
    fn serves_fresh_snapshots_and_refuses_garbage() {
        let server = Arc::new(MetricsServer::start("127.0.0.1:0".parse().unwrap(), None).unwrap());
        let addr = server.local_addr();
        let stop = Arc::new(AtomicBool::new(false));
        let mut n = 0;
        let lp = control_loop(&server, &stop, move || {
            n += 1;
            let mut s = crate::metrics::Snapshot::default();
            s.add("scrapes", "Test.", crate::metrics::Kind::Counter, n);
            s
        });
        let a = get(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(a.starts_with("HTTP/1.1 200 OK"), "{a}");
        assert!(a.contains("tandem_scrapes_total 1"), "{a}");
        assert!(a.contains("Content-Type: text/plain; version=0.0.4"), "{a}");
        let om = get(
            addr,
            b"GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text\r\n\r\n",
        );
        assert!(
            om.contains("application/openmetrics-text") && om.contains("# EOF"),
            "{om}"
        );
        let b = get(addr, b"GET /metrics HTTP/1.1\r\n\r\n");
        assert!(b.contains("tandem_scrapes_total 3"), "{b}");
        assert!(get(addr, b"GET /x HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
        assert!(get(addr, b"\x00\x01garbage\r\n\r\n").starts_with("HTTP/1.1 400"));
        // A scraper that never sends its request does not block the others.
        let _slow: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(addr).unwrap()).collect();
        wait_active(&server, 2);
        assert!(get(addr, b"GET /metrics HTTP/1.1\r\n\r\n").contains("tandem_scrapes_total 4"));
        // One address holds at most MAX_PER_SOURCE: the next is told at once, not left hanging.
        let third = TcpStream::connect(addr).unwrap();
        wait_active(&server, 3);
        let mut refused = String::new();
        // Read without writing: the answer comes before any request is read.
        TcpStream::connect(addr)
            .unwrap()
            .read_to_string(&mut refused)
            .unwrap();
        assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
        assert_eq!(
            server.shared.counters.refused_busy.load(Ordering::Relaxed),
            1
        );
        // Closed, they give their places back.
        drop((_slow, third));
        wait_active(&server, 0);
        assert!(get(addr, b"GET /metrics HTTP/1.1\r\n\r\n").contains("tandem_scrapes_total 5"));
        stop.store(true, Ordering::Relaxed);
        lp.join().unwrap();
        // Without the loop, a scrape gets the previous snapshot after FRESH_WAIT.
        let t = Instant::now();
        assert!(get(addr, b"GET /metrics HTTP/1.1\r\n\r\n").contains("tandem_scrapes_total 5"));
        assert!(t.elapsed() >= FRESH_WAIT);
        assert!(server.shared.counters.stale.load(Ordering::Relaxed) >= 1);
        // The 404, the garbage, and the three connections closed without a request.
        assert_eq!(
            server.shared.counters.bad_requests.load(Ordering::Relaxed),
            5
        );
    }

    /// The per-source limit (3) keeps one client from shutting Prometheus out, but three
    /// addresses, each holding three silent connections and reconnecting as they are closed,
    /// took all eight slots: every scrape was answered 503 (0 of 24 in 12 s). A newcomer now
    /// takes the place of the oldest connection that has not sent its request.
    #[test]
    fn three_silent_sources_do_not_shut_prometheus_out() {
        let server = Arc::new(MetricsServer::start("127.0.0.1:0".parse().unwrap(), None).unwrap());
        let addr = server.local_addr();
        let stop = Arc::new(AtomicBool::new(false));
        let lp = control_loop(&server, &stop, crate::metrics::Snapshot::default);
        // The attackers: 127.0.0.2..4, each keeping three connections open, every 20 ms.
        let st = stop.clone();
        let attackers = std::thread::spawn(move || {
            let mut held: Vec<(u8, TcpStream)> = Vec::new();
            while !st.load(Ordering::Relaxed) {
                // Drop what the server closed.
                held.retain(|(_, c)| {
                    let _ = c.set_nonblocking(true);
                    matches!((&*c).read(&mut [0u8; 1]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
                });
                for last in 2..=4u8 {
                    let n = held.iter().filter(|(l, _)| *l == last).count();
                    for _ in n..MAX_PER_SOURCE {
                        let src = std::net::Ipv4Addr::new(127, 0, 0, last);
                        if let Ok(c) = crate::unproven::connect_from(src, addr) {
                            held.push((last, c));
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        // The attack under way: every place taken.
        let t = Instant::now();
        while server.shared.active.load(Ordering::Acquire) < MAX_CONNECTIONS {
            assert!(
                t.elapsed() < IO_TIMEOUT,
                "the attackers never took the 8 places"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let (mut ok, mut tries) = (0, 0);
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(4) {
            tries += 1;
            // A reset counts as a refusal, as a 503 does.
            let mut a = String::new();
            let _ = TcpStream::connect(addr).and_then(|mut s| {
                s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n")?;
                s.read_to_string(&mut a)
            });
            ok += usize::from(a.starts_with("HTTP/1.1 200"));
            std::thread::sleep(Duration::from_millis(200));
        }
        stop.store(true, Ordering::Relaxed);
        attackers.join().unwrap();
        lp.join().unwrap();
        assert!(
            ok * 4 >= tries * 3,
            "Prometheus got {ok} of {tries} scrapes through"
        );
    }
}
