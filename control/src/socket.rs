//! The control socket: a Unix stream socket carrying one JSON request per line and one JSON
//! reply per line. `tandemd` serves it from its control thread (mio, never blocking on a slow
//! client); `tandemctl` is its client.
//!
//! Request: `{"cmd":"states","args":{"port":80}}`. Reply: `{"ok":true,"data":...}` or
//! `{"ok":false,"error":"..."}`. A malformed or oversized request gets an error reply that says
//! what was wrong; it never takes the daemon down.

use std::collections::{HashMap, VecDeque};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mio::net::{UnixListener, UnixStream};
use mio::{Events, Interest, Poll, Token};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Where `tandemd` listens unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/tandem/tandemd.sock";

/// A request line longer than this is refused (and the connection closed): room for a config
/// file of [`crate::config::MAX_FILE_BYTES`] sent by `config check|apply FILE`, JSON-escaped.
pub const MAX_REQUEST: usize = 2 * crate::config::MAX_FILE_BYTES as usize + 64 * 1024;

/// Connections served at once (each may buffer up to [`MAX_REQUEST`]). tandemctl opens one per
/// command. A newcomer past this takes the place of the connection that has waited longest for
/// its client; when every one has a request about to be answered, it gets a "busy" reply.
pub const MAX_CONNECTIONS: usize = 32;

/// How long a connection may wait for its client, to send a whole request or to read a reply,
/// before it is closed: tandemctl sends its request at once and reads its reply as it comes.
pub const IDLE: Duration = Duration::from_secs(10);

/// How long one turn of the control loop ([`ControlServer::poll_once`]) may spend answering
/// requests before it returns to the loop (CARP, config sync, the watchdog): at least one is
/// answered, and the rest wait for the next turn.
pub const TURN_BUDGET: Duration = Duration::from_millis(50);

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Request {
    pub cmd: String,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub args: Value,
    /// Who sent it (set by the server from `SO_PEERCRED`, never read from the wire).
    #[serde(skip)]
    pub peer: Option<crate::peer::Peer>,
}

impl Request {
    pub fn new(cmd: &str, args: Value) -> Request {
        Request {
            cmd: cmd.to_string(),
            args,
            peer: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Reply {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Reply {
    /// The reply to a handled request: the data, or the error's Display as the operator's
    /// message. The one place where a handler's error becomes text.
    pub fn from_result<E: std::fmt::Display>(r: Result<Value, E>) -> Reply {
        match r {
            Ok(data) => Reply {
                ok: true,
                data: Some(data),
                error: None,
            },
            Err(e) => Reply {
                ok: false,
                data: None,
                error: Some(e.to_string()),
            },
        }
    }
}

/// What the daemon does with a request.
pub trait Handler {
    /// Why a request is refused: its Display is the message the operator reads (the reply's
    /// `error`). Each handler has its own (the daemon's is
    /// [`HandlerError`](crate::handler::HandlerError)).
    type Error: std::fmt::Display;
    fn handle(&mut self, req: &Request) -> Result<Value, Self::Error>;
}

/// Why the server refused a request line before any handler saw it.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// The line is not a JSON [`Request`].
    #[error("malformed request: {0}")]
    Malformed(#[source] serde_json::Error),
    /// The line is longer than [`MAX_REQUEST`]; the connection is closed after this reply.
    #[error("request longer than {} bytes", MAX_REQUEST)]
    TooLong,
}

const LISTENER: Token = Token(0);

struct Conn {
    stream: UnixStream,
    peer: Option<crate::peer::Peer>,
    inbuf: Vec<u8>,
    /// How much of `inbuf` holds no newline: each byte is searched once.
    scanned: usize,
    outbuf: Vec<u8>,
    /// The client closed its side: answer what is buffered, then close.
    eof: bool,
    /// Set once the reply to a fatal error is queued: close when it is written.
    closing: bool,
    /// Its last step: accepted, a reply queued, or some of it written. A connection that waits
    /// for a request, or for its client to read, is measured from here.
    last_progress: Instant,
}

impl Conn {
    /// Whether a whole request is buffered (it is answered once the previous reply is out).
    fn has_line(&mut self) -> bool {
        match self.inbuf[self.scanned..].iter().position(|&b| b == b'\n') {
            Some(_) => true,
            None => {
                self.scanned = self.inbuf.len();
                false
            }
        }
    }

    /// Waiting for its client, to send a request or to read a reply: what the idle deadline
    /// or a newcomer may end. A connection whose request is about to be answered is not.
    fn waiting(&mut self) -> bool {
        !self.outbuf.is_empty() || self.closing || !self.has_line()
    }
}

/// The server side, polled by the control thread.
pub struct ControlServer {
    poll: Poll,
    events: Events,
    listener: UnixListener,
    conns: HashMap<Token, Conn>,
    next_token: usize,
    path: PathBuf,
    /// The group that may use the socket besides root and our own user (mode 0660), if any.
    group: Option<u32>,
    own_uid: u32,
    /// Connections refused: the peer is neither root, us, nor in the socket's group.
    pub refused_peers: u64,
    /// Connections closed at accept because [`MAX_CONNECTIONS`] were open, each with a request
    /// in hand.
    pub busy_refusals: u64,
    /// Connections closed for a newcomer, or past [`IDLE`], while they waited for their client.
    pub idle_closed: u64,
    /// Connections with a whole request buffered and nothing left to write: answered in turn.
    ready: VecDeque<Token>,
    idle: Duration,
}

impl std::fmt::Debug for ControlServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ControlServer({}, {} connections)",
            self.path.display(),
            self.conns.len()
        )
    }
}

impl ControlServer {
    /// Listens on `path`, replacing a stale socket file left by a killed daemon. Refuses when
    /// another daemon answers on it. The socket is mode 0600 whatever the umask.
    pub fn bind(path: &Path) -> io::Result<ControlServer> {
        ControlServer::bind_with_group(path, None)
    }

    /// [`Self::bind`], and with a group the socket is mode 0660 and owned by that group, whose
    /// members may use it. The socket gets its mode under a temporary name and is renamed into
    /// place, so that it never exists with the umask's mode at `path`.
    pub fn bind_with_group(path: &Path, group: Option<u32>) -> io::Result<ControlServer> {
        use std::os::unix::fs::PermissionsExt;
        if path.exists() {
            if StdUnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("{}: another tandemd is listening there", path.display()),
                ));
            }
            std::fs::remove_file(path)?;
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(format!(".{}.tmp", std::process::id()));
        let tmp = PathBuf::from(tmp);
        let _ = std::fs::remove_file(&tmp);
        let mut listener = UnixListener::bind(&tmp)?;
        let placed = (|| {
            let mode = if group.is_some() { 0o660 } else { 0o600 };
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
            if let Some(g) = group {
                std::os::unix::fs::chown(&tmp, None, Some(g))?;
            }
            std::fs::rename(&tmp, path)
        })();
        if let Err(e) = placed {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        Ok(ControlServer {
            poll,
            events: Events::with_capacity(64),
            listener,
            conns: HashMap::new(),
            next_token: 1,
            path: path.to_path_buf(),
            group,
            // SAFETY: geteuid has no preconditions and cannot fail.
            own_uid: unsafe { libc::geteuid() },
            refused_peers: 0,
            busy_refusals: 0,
            idle_closed: 0,
            ready: VecDeque::new(),
            idle: IDLE,
        })
    }

    /// A shorter (or longer) idle deadline than [`IDLE`], for tests.
    #[cfg(test)]
    fn set_idle(&mut self, idle: Duration) {
        self.idle = idle;
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits up to `timeout` for socket activity (not at all when requests are waiting) and
    /// serves what is ready: reads and writes, then answers requests for up to [`TURN_BUDGET`].
    pub fn poll_once<H: Handler>(&mut self, timeout: Duration, handler: &mut H) -> io::Result<()> {
        let timeout = if self.ready.is_empty() {
            timeout
        } else {
            Duration::ZERO
        };
        match self.poll.poll(&mut self.events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(e),
        }
        let ready: Vec<Token> = self.events.iter().map(|e| e.token()).collect();
        for token in ready {
            if token == LISTENER {
                // Out of descriptors, say: the other events of the turn are still served.
                if let Err(e) = self.accept_all() {
                    tracing::warn!("control socket: accept: {e}");
                }
            } else {
                self.transfer(token);
            }
        }
        self.answer_ready(handler);
        self.close_idle();
        Ok(())
    }

    fn accept_all(&mut self) -> io::Result<()> {
        loop {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    let peer = crate::peer::Peer::of(&stream).ok();
                    if !peer
                        .as_ref()
                        .is_some_and(|p| p.allowed(self.own_uid, self.group))
                    {
                        self.refused_peers += 1;
                        // Logged at 1, 2, 4, 8... refusals: a local flood cannot fill the log.
                        if !self.refused_peers.is_power_of_two() {
                            continue;
                        }
                        tracing::warn!(
                            refused = self.refused_peers,
                            peer = ?peer,
                            "control socket: connection refused: not root, not tandemd's user, not in the socket's group"
                        );
                        continue;
                    }
                    if self.conns.len() >= MAX_CONNECTIONS && !self.close_longest_waiting() {
                        self.busy_refusals += 1;
                        if self.busy_refusals.is_power_of_two() {
                            tracing::warn!(
                                refused = self.busy_refusals,
                                "control socket: connection closed: {MAX_CONNECTIONS} already open"
                            );
                        }
                        // Said, not only closed: the client's error names the cause. A fresh
                        // socket's buffer takes the one short line.
                        let busy = format!(
                            "{{\"ok\":false,\"error\":\"tandemd is busy: {MAX_CONNECTIONS} control connections are open, each with a request being answered; try again\"}}\n"
                        );
                        let _ = stream.write(busy.as_bytes());
                        continue;
                    }
                    let token = Token(self.next_token);
                    self.next_token += 1;
                    self.poll.registry().register(
                        &mut stream,
                        token,
                        Interest::READABLE | Interest::WRITABLE,
                    )?;
                    let conn = Conn {
                        stream,
                        peer,
                        inbuf: Vec::new(),
                        scanned: 0,
                        outbuf: Vec::new(),
                        eof: false,
                        closing: false,
                        last_progress: Instant::now(),
                    };
                    self.conns.insert(token, conn);
                    // What the client sent already is read now: a connection is never judged
                    // waiting (by a newcomer or the idle deadline) with its request unread.
                    self.transfer(token);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    /// Closes the connection that has waited longest for its client, to make room for a
    /// newcomer; false when every connection has a request about to be answered.
    fn close_longest_waiting(&mut self) -> bool {
        let mut waiting: Vec<(Instant, Token)> = self
            .conns
            .iter_mut()
            .filter_map(|(t, c)| c.waiting().then_some((c.last_progress, *t)))
            .collect();
        waiting.sort_unstable();
        for (_, token) in waiting {
            if self.still_waiting(token) {
                self.close(token);
                self.count_idle_closed("to make room for a new one");
                return true;
            }
        }
        false
    }

    /// Whether the connection of `token` still waits for its client once what its client sent
    /// is read (its readable event may not have been served yet this turn).
    fn still_waiting(&mut self, token: Token) -> bool {
        self.transfer(token);
        self.conns.get_mut(&token).is_some_and(Conn::waiting)
    }

    /// Closes the connections that have waited for their clients past the idle deadline.
    fn close_idle(&mut self) {
        let idle = self.idle;
        let expired: Vec<Token> = self
            .conns
            .iter_mut()
            .filter(|(_, c)| c.last_progress.elapsed() > idle)
            .filter_map(|(t, c)| c.waiting().then_some(*t))
            .collect();
        for token in expired {
            if self.still_waiting(token) {
                self.close(token);
                self.count_idle_closed("its client sent no request or read no reply in time");
            }
        }
    }

    /// Counts a connection closed while it waited for its client; logged at 1, 2, 4, 8...
    fn count_idle_closed(&mut self, why: &str) {
        self.idle_closed += 1;
        if self.idle_closed.is_power_of_two() {
            tracing::info!(
                closed = self.idle_closed,
                "control socket: connection closed: {why}"
            );
        }
    }

    fn close(&mut self, token: Token) {
        if let Some(mut c) = self.conns.remove(&token) {
            let _ = self.poll.registry().deregister(&mut c.stream);
        }
    }

    /// A connection's socket is ready: reads (unless a request is already buffered) and
    /// writes what it can; queues it for an answer when a request waits and nothing is left
    /// to write.
    fn transfer(&mut self, token: Token) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        match transfer(conn) {
            Flow::Close => self.close(token),
            Flow::Answer => {
                if !self.ready.contains(&token) {
                    self.ready.push_back(token);
                }
            }
            Flow::Wait => {}
        }
    }

    /// Answers the queued requests, one per connection at a time in turn, until the turn's
    /// budget is spent (after at least one).
    fn answer_ready<H: Handler>(&mut self, handler: &mut H) {
        let start = Instant::now();
        while let Some(token) = self.ready.pop_front() {
            let Some(conn) = self.conns.get_mut(&token) else {
                continue;
            };
            answer_one(conn, handler);
            // The reply goes out now if the client reads; more requests are read then.
            self.transfer(token);
            if start.elapsed() >= TURN_BUDGET {
                break;
            }
        }
    }
}

/// What a connection needs next.
enum Flow {
    /// A request is buffered and nothing is left to write.
    Answer,
    /// Waiting for the client: a request's rest, or room to write.
    Wait,
    /// Finished (the client left, or a fatal error's reply is out).
    Close,
}

/// Writes what it can, then reads while no whole request is buffered: a client that pipelines
/// requests without reading its replies is read no further than its next request, and held by
/// its own socket's buffers.
fn transfer(conn: &mut Conn) -> Flow {
    while !conn.outbuf.is_empty() {
        match conn.stream.write(&conn.outbuf) {
            Ok(0) => return Flow::Close,
            Ok(n) => {
                conn.outbuf.drain(..n);
                conn.last_progress = Instant::now();
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Flow::Wait,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Flow::Close,
        }
    }
    if conn.closing {
        return Flow::Close;
    }
    let mut buf = [0u8; 4096];
    while !conn.eof && !conn.has_line() && conn.inbuf.len() <= MAX_REQUEST {
        match conn.stream.read(&mut buf) {
            Ok(0) => conn.eof = true,
            Ok(n) => conn.inbuf.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Flow::Close,
        }
    }
    if conn.has_line() || conn.inbuf.len() > MAX_REQUEST {
        Flow::Answer
    } else if conn.eof {
        Flow::Close
    } else {
        Flow::Wait
    }
}

/// Answers the first buffered request, or refuses an overlong one (and closes after).
fn answer_one<H: Handler>(conn: &mut Conn, handler: &mut H) {
    if let Some(pos) = conn.inbuf.iter().position(|&b| b == b'\n') {
        let line: Vec<u8> = conn.inbuf.drain(..=pos).collect();
        conn.scanned = 0;
        let reply = answer(&line[..line.len() - 1], conn.peer.as_ref(), handler);
        queue_reply(conn, &reply);
    } else if conn.inbuf.len() > MAX_REQUEST && !conn.closing {
        queue_reply(conn, &Reply::from_result(Err(SocketError::TooLong)));
        conn.inbuf.clear();
        conn.scanned = 0;
        conn.closing = true;
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn answer<H: Handler>(line: &[u8], peer: Option<&crate::peer::Peer>, handler: &mut H) -> Reply {
    let mut req: Request = match serde_json::from_slice(line) {
        Ok(r) => r,
        Err(e) => return Reply::from_result(Err(SocketError::Malformed(e))),
    };
    req.peer = peer.cloned();
    Reply::from_result(handler.handle(&req))
}

fn queue_reply(conn: &mut Conn, reply: &Reply) {
    conn.last_progress = Instant::now();
    // Serialising our own Reply cannot fail: it holds only strings and JSON values.
    let mut bytes = serde_json::to_vec(reply).unwrap_or_else(|_| b"{\"ok\":false}".to_vec());
    bytes.push(b'\n');
    conn.outbuf.extend_from_slice(&bytes);
}

/// Why a client request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket could not be reached: the daemon is not running or the path is wrong.
    #[error("cannot reach tandemd at {path}: {source} (is tandemd running? see --socket)")]
    Connect { path: String, source: io::Error },
    /// The connection broke or timed out before a reply came.
    #[error("no reply from tandemd at {path}: {source}")]
    Io { path: String, source: io::Error },
    /// The daemon answered something that is not a reply.
    #[error("unreadable reply from tandemd: {0}")]
    BadReply(String),
    /// The daemon refused the request; the message is its own.
    #[error("{0}")]
    Refused(String),
}

/// Sends one request and waits (up to `timeout`) for its reply.
pub fn request(path: &Path, req: &Request, timeout: Duration) -> Result<Value, ClientError> {
    let p = path.display().to_string();
    let mut stream = StdUnixStream::connect(path).map_err(|source| ClientError::Connect {
        path: p.clone(),
        source,
    })?;
    let io_err = |source| ClientError::Io {
        path: p.clone(),
        source,
    };
    stream.set_read_timeout(Some(timeout)).map_err(io_err)?;
    stream.set_write_timeout(Some(timeout)).map_err(io_err)?;
    let mut line = serde_json::to_vec(req).map_err(|e| ClientError::BadReply(e.to_string()))?;
    line.push(b'\n');
    stream.write_all(&line).map_err(io_err)?;
    let mut reply = String::new();
    BufReader::new(stream)
        .read_line(&mut reply)
        .map_err(io_err)?;
    if reply.is_empty() {
        return Err(ClientError::BadReply(
            "connection closed without a reply".into(),
        ));
    }
    let reply: Reply =
        serde_json::from_str(&reply).map_err(|e| ClientError::BadReply(e.to_string()))?;
    match (reply.ok, reply.data, reply.error) {
        (true, data, _) => Ok(data.unwrap_or(Value::Null)),
        (false, _, err) => Err(ClientError::Refused(
            err.unwrap_or_else(|| "refused".into()),
        )),
    }
}

#[cfg(test)]
mod limits_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    struct Echo;
    impl Handler for Echo {
        type Error = String;
        fn handle(&mut self, req: &Request) -> Result<Value, String> {
            match req.cmd.as_str() {
                "echo" => Ok(req.args.clone()),
                other => Err(format!("unknown command {other:?}")),
            }
        }
    }

    fn serve_in_background(path: PathBuf) -> (Arc<AtomicBool>, std::thread::JoinHandle<()>) {
        let stop = Arc::new(AtomicBool::new(false));
        let mut server = ControlServer::bind(&path).unwrap();
        let s = stop.clone();
        let h = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                server
                    .poll_once(Duration::from_millis(20), &mut Echo)
                    .unwrap();
            }
        });
        (stop, h)
    }

    fn temp_socket(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("tandem-test-{}-{name}.sock", std::process::id()))
    }

    #[test]
    fn a_request_gets_its_reply_and_errors_are_messages() {
        let path = temp_socket("echo");
        let (stop, h) = serve_in_background(path.clone());
        let t = Duration::from_secs(5);
        let v = request(&path, &Request::new("echo", json!({"a": 1})), t).unwrap();
        assert_eq!(v, json!({"a": 1}));
        let e = request(&path, &Request::new("nope", Value::Null), t).unwrap_err();
        assert_eq!(e.to_string(), "unknown command \"nope\"");
        stop.store(true, Ordering::Relaxed);
        h.join().unwrap();
    }

    #[test]
    fn malformed_and_oversized_requests_are_refused_with_a_reason() {
        let path = temp_socket("bad");
        let (stop, h) = serve_in_background(path.clone());
        let mut s = StdUnixStream::connect(&path).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"{not json\n").unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        let reply: Reply = serde_json::from_str(&line).unwrap();
        assert!(!reply.ok);
        assert!(reply.error.unwrap().starts_with("malformed request:"));

        let big = vec![b'x'; MAX_REQUEST + 10];
        let _ = s.write_all(&big);
        line.clear();
        r.read_line(&mut line).unwrap();
        let reply: Reply = serde_json::from_str(&line).unwrap();
        assert_eq!(
            reply.error.unwrap(),
            format!("request longer than {MAX_REQUEST} bytes")
        );
        stop.store(true, Ordering::Relaxed);
        h.join().unwrap();
    }

    #[test]
    fn an_absent_daemon_is_a_clear_error() {
        let path = temp_socket("absent");
        let e = request(
            &path,
            &Request::new("status", Value::Null),
            Duration::from_secs(1),
        );
        let msg = e.unwrap_err().to_string();
        assert!(
            msg.starts_with(&format!("cannot reach tandemd at {}", path.display())),
            "{msg}"
        );
        assert!(msg.contains("is tandemd running?"));
    }
}
