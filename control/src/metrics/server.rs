//! The Prometheus endpoint: `GET /metrics` on `[system.metrics] listen`, on a thread of its own.
//!
//! Nothing here can stall the box. The endpoint never reads a source itself: it asks the control
//! loop for a fresh [`Snapshot`](super::Snapshot) (a flag the loop looks at every round, 20 ms)
//! and waits for it at most [`FRESH_WAIT`], serving the previous one if the loop is busy. At most
//! [`MAX_CONNECTIONS`] scrapes run at once (each on a short-lived thread, with read and write
//! timeouts); more are closed at once and counted. A request is read up to [`MAX_REQUEST`] bytes;
//! anything but `GET /metrics` gets a 4xx answer.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Scrapes served at once; more are refused.
pub const MAX_CONNECTIONS: usize = 4;
/// The longest request head read.
pub const MAX_REQUEST: usize = 8192;
/// How long a scraper may take to send its request, or to read the answer.
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
            Ok((stream, _)) => {
                if shared.active.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
                    shared.active.fetch_sub(1, Ordering::AcqRel);
                    shared.counters.refused_busy.fetch_add(1, Ordering::Relaxed);
                    drop(stream);
                    continue;
                }
                let sh = shared.clone();
                let spawned = std::thread::Builder::new()
                    .name("tandem-scrape".into())
                    .spawn(move || {
                        serve(stream, &sh);
                        sh.active.fetch_sub(1, Ordering::AcqRel);
                    });
                if spawned.is_err() {
                    shared.active.fetch_sub(1, Ordering::AcqRel);
                }
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

fn read_head(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let deadline = Instant::now() + IO_TIMEOUT;
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && !buf.windows(2).any(|w| w == b"\n\n") {
        if buf.len() >= MAX_REQUEST || Instant::now() >= deadline {
            return None;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    Some(buf)
}

fn serve(mut stream: TcpStream, shared: &Shared) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    shared.counters.requests.fetch_add(1, Ordering::Relaxed);
    let route = read_head(&mut stream).map_or(Route::Bad, |h| route(&h));
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
    let _ = stream.write_all(header.as_bytes());
    let _ = stream.write_all(body.as_bytes());
    let _ = stream.flush();
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
            super::collect::state_census(table, &mut s);
            Some(Arc::new(s))
        }
        None => Some(snap),
    }
}

#[cfg(test)]
mod test {
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

    #[test]
    fn serves_fresh_snapshots_and_refuses_garbage() {
        let server = Arc::new(MetricsServer::start("127.0.0.1:0".parse().unwrap(), None).unwrap());
        let addr = server.local_addr();
        // A stand-in for the control loop.
        let stop = Arc::new(AtomicBool::new(false));
        let (srv, st) = (server.clone(), stop.clone());
        let mut n = 0;
        let lp = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                if srv.wanted() {
                    n += 1;
                    let mut s = crate::metrics::Snapshot::default();
                    s.add("scrapes", "Test.", crate::metrics::Kind::Counter, n);
                    srv.publish(s);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
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
        std::thread::sleep(Duration::from_millis(100));
        assert!(get(addr, b"GET /metrics HTTP/1.1\r\n\r\n").contains("tandem_scrapes_total 4"));
        stop.store(true, Ordering::Relaxed);
        lp.join().unwrap();
        // Without the loop, a scrape gets the previous snapshot after FRESH_WAIT.
        let t = Instant::now();
        assert!(get(addr, b"GET /metrics HTTP/1.1\r\n\r\n").contains("tandem_scrapes_total 4"));
        assert!(t.elapsed() >= FRESH_WAIT);
        assert!(server.shared.counters.stale.load(Ordering::Relaxed) >= 1);
        assert_eq!(
            server.shared.counters.bad_requests.load(Ordering::Relaxed),
            2
        );
    }
}
